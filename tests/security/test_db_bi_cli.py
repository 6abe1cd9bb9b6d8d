"""`callstore report bi-role`: options, the psql line, errors naming the argument."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.cli import main


async def test_bi_role_command_prints_how_to_connect(engine: AsyncEngine, db_url: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("BI_PW", "a long secret")
    name = f"bi_{uuid.uuid4().hex[:10]}"
    try:
        args = ["report", "bi-role", "--name", name, "--password-env", "BI_PW", "--statement-timeout", "30",
                "--connection-limit", "3"]
        assert await asyncio.to_thread(main, args) == 0
        out = capsys.readouterr().out
        url = urlsplit(db_url)
        assert f"psql 'host={url.hostname} port={url.port} dbname={url.path[1:]} user={name}'" in out
        assert "statement timeout 30 s, at most 3 connections, time zone Asia/Ho_Chi_Minh" in out
        assert "a long secret" not in out and "$BI_PW" in out
        # The printed line works, with the password.
        conn = await asyncpg.connect(host=url.hostname, port=url.port, database=url.path[1:], user=name,
                                     password="a long secret")
        try:
            assert await conn.fetchval("SHOW statement_timeout") == "30s"
        finally:
            await conn.close()

        for bad, arg in ((["--statement-timeout", "0"], "--statement-timeout"),
                         (["--connection-limit", "0"], "--connection-limit"),
                         (["--timezone", "Mars/Olympus"], "--timezone")):
            assert await asyncio.to_thread(main, [*args, *bad]) == 2
            assert capsys.readouterr().err.startswith(f"callstore: error: {arg}:")
        # The service's own role is never turned into a BI role.
        own = await asyncpg.connect(db_url)
        try:
            me = await own.fetchval("SELECT current_user")
        finally:
            await own.close()
        assert await asyncio.to_thread(main, ["report", "bi-role", "--name", me, "--password-env", "BI_PW"]) == 2
        assert "--name:" in capsys.readouterr().err
    finally:
        async with engine.begin() as conn:
            if await conn.scalar(text("SELECT count(*) FROM pg_roles WHERE rolname = :n"), {"n": name}):
                await conn.execute(text(f"DROP OWNED BY {name}"))
                await conn.execute(text(f"DROP ROLE {name}"))
