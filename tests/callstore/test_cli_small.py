"""Small command-line promises, checked with the installed `callstore` script
run from another directory: --version, errors that name the bad argument,
`queues map` keeping its note, `tokens list` showing the latest use."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.fake import build_state, running_fake
from tests.conftest import serving, test_settings
from tests.sync.alohub import API_KEY, SINCE, UNTIL

SCRIPT = Path(sys.executable).with_name("callstore")
REPO = Path(__file__).resolve().parents[2]


def callstore(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it, without this machine's Alohub or callstore settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL"))}
    full_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_version(tmp_path: Path) -> None:
    r = callstore("--version", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"callstore {metadata.version('callstore')}"
    assert re.fullmatch(r"callstore \d+\.\d+\.\d+\S*", r.stdout.strip())


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--bogus",), "--bogus"),
        (("tokens", "--bogus"), "--bogus"),
        (("queues", "--hotline=1"), "--hotline=1"),
        (("tokens", "list", "--bogus"), "--bogus"),
        (("tokens", "create", "--role", "nobody"), "--role"),
    ],
)
def test_argument_errors_name_the_bad_argument(tmp_path: Path, args: tuple[str, ...], named: str) -> None:
    r = callstore(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("callstore: error: ")
    assert named in lines[0]
    assert "arguments are required" not in lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((), "choose a command: serve, migrate, "),
        (("tokens",), "choose a command: create, list, revoke; see `callstore tokens --help`"),
        (("fake-alohub",), "choose a command: serve, send; see `callstore fake-alohub --help`"),
    ],
)
def test_a_missing_command_lists_the_choices(tmp_path: Path, args: tuple[str, ...], line: str) -> None:
    r = callstore(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"callstore: error: {line}") and len(r.stderr.splitlines()) == 1


def test_gitignore_keeps_env_files_out() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


@pytest.fixture
def fake() -> Iterator[str]:
    with running_fake(build_state(calls=1, seed=2, since=SINCE, until=UNTIL, api_key=API_KEY)) as url:
        yield url


async def test_queues_map_keeps_the_note_unless_given(db_url: str, engine: AsyncEngine, fake: str,
                                                      tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "ALOHUB_API_URL": f"{fake}/api", "ALOHUB_XAPI_URL": fake,
           "ALOHUB_API_KEY": API_KEY, "ALOHUB_MEDIA_URL": fake}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = callstore(*args, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        return r

    async def note() -> str:
        async with engine.connect() as conn:
            return str(await conn.scalar(text("SELECT note FROM callstore.queue_mappings WHERE hotline = '19009999'")))

    await asyncio.to_thread(run, "sync-queues")
    await asyncio.to_thread(run, "queues", "map", "--hotline", "19009999", "--queue", "1001227", "--note", "promo")
    await asyncio.to_thread(run, "queues", "map", "--hotline", "19009999", "--queue", "1001228")
    assert await note() == "promo"
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT queue_id FROM callstore.queue_mappings")) == 1001228
    await asyncio.to_thread(run, "queues", "map", "--hotline", "19009999", "--queue", "1001228", "--note", "")
    assert await note() == ""
    await asyncio.to_thread(run, "queues", "map", "--hotline", "02838889999", "--queue", "1001228")
    listed = await asyncio.to_thread(run, "queues", "list")
    assert "+842838889999        1001228  \n" in listed.stdout  # a new mapping without --note: no note


async def test_tokens_list_shows_the_latest_use(db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    from receiver.app import create_app

    env = {"DATABASE_URL": db_url}
    created = await asyncio.to_thread(callstore, "tokens", "create", "--role", "reader", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[0]
    # A use half a minute ago: the next request must move it, not wait for a minute to pass.
    earlier = datetime.now(timezone.utc) - timedelta(seconds=30)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.api_tokens SET last_used_at = :t"), {"t": earlier})
    async with serving(create_app(test_settings(), engine)) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/anything", headers={"Authorization": f"Bearer {token}"})).status_code == 404
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT last_used_at FROM callstore.api_tokens"))
    assert stored > earlier + timedelta(seconds=20)
    listed = await asyncio.to_thread(callstore, "tokens", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    # Shown to the second in the tenant's zone (the default tenant's: Asia/Ho_Chi_Minh).
    assert stored.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).isoformat(timespec="seconds") in listed.stdout


def test_demo_refuses_a_real_database_and_bad_ports(tmp_path: Path) -> None:
    refused = callstore("demo", cwd=tmp_path, env={"DATABASE_URL": "postgresql://u:pw@127.0.0.1:5432/prod"})
    assert refused.returncode == 2 and "pw" not in refused.stderr
    assert refused.stderr.startswith("callstore: error: DATABASE_URL: callstore demo uses its own embedded database")
    bad = callstore("demo", "--calls", "many", cwd=tmp_path, env={"CALLSTORE_DATA_DIR": str(tmp_path / "d")})
    assert bad.returncode == 2 and bad.stderr.startswith("callstore: error: --calls: 'many'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = callstore("demo", "--fake-port", str(port), cwd=tmp_path,
                         env={"CALLSTORE_DATA_DIR": str(tmp_path / "d")})
    assert busy.returncode == 2
    assert busy.stderr.strip() == (f"callstore: error: --fake-port: cannot listen on 127.0.0.1:{port}: "
                                   "Address already in use")
    assert not (tmp_path / "d").exists()  # nothing was created for a demo that could not start
