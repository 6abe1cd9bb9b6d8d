"""`callstore report bi-role`: a login that reads schema analytics and nothing else."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.bi_role import ensure_bi_role, scram_verifier


def as_role(url: str, role: str, password: str) -> str:
    p = urlsplit(url)
    host = p.netloc.rsplit("@", 1)[-1]
    return urlunsplit(("postgresql", f"{role}:{password}@{host}", p.path, p.query, ""))


async def test_bi_role_reads_analytics_only(engine: AsyncEngine, db_url: str) -> None:
    role, password = f"bi_{uuid.uuid4().hex[:8]}", "s3cret'pw"
    async with engine.begin() as conn:
        assert await ensure_bi_role(conn, role, password) is True
        assert await ensure_bi_role(conn, role, password) is False  # idempotent: updates
        stored = await conn.scalar(text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role})
        assert stored.startswith("SCRAM-SHA-256$") and password not in stored
    try:
        conn = await asyncpg.connect(as_role(db_url, role, password))
        try:
            for view in ("calls", "dead_letters", "queue_stats_15m", "queue_stats_hourly", "queue_stats_daily", "agent_daily"):
                await conn.fetch(f"SELECT * FROM analytics.{view} LIMIT 1")
            await conn.fetch("SELECT * FROM queue_stats_daily LIMIT 1")  # search_path is analytics
            for table in ("calls", "raw_events", "api_tokens", "queue_rollup_15m"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT 1 FROM callstore.{table} LIMIT 1")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("CREATE TABLE analytics.x (i int)")
        finally:
            await conn.close()
    finally:
        async with engine.begin() as c:
            await c.execute(text(f"DROP OWNED BY {role}"))
            await c.execute(text(f"DROP ROLE {role}"))


def test_scram_verifier_matches_rfc7677_shape() -> None:
    v = scram_verifier("pencil", salt=b"0123456789abcdef")
    assert v.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$") and v.count(":") == 2


async def test_bad_role_name_rejected(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(ValueError, match="name"):
            await ensure_bi_role(conn, "x; DROP TABLE y", "pw")
