"""`callstore backfill`, `sync-queues` and `queues map|unmap|list` as a user runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.fake import build_state, running_fake
from tests.callstore.test_cli import run
from tests.sync.alohub import API_KEY, SINCE, UNTIL


@pytest.fixture
def fake() -> Iterator[str]:
    with running_fake(build_state(calls=250, seed=2, since=SINCE, until=UNTIL, api_key=API_KEY)) as url:
        yield url


def env_for(db_url: str, fake: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "ALOHUB_API_URL": f"{fake}/api", "ALOHUB_XAPI_URL": fake,
            "ALOHUB_API_KEY": API_KEY, "ALOHUB_MEDIA_URL": fake}


async def test_backfill_command_is_idempotent_and_summarises(db_url: str, engine: AsyncEngine, fake: str,
                                                             tmp_path: Path) -> None:
    env = env_for(db_url, fake)
    args = ("backfill", "--since", "2024-01-13", "--until", "2024-01-13T17:00:00Z", "--chunk-hours", "6")
    first = await asyncio.to_thread(run, *args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "ok. Stored 250 records" in first.stdout and "250 calls first seen by the backfill" in first.stdout
    assert "from 2024-01-13T00:00:00+07:00 to 2024-01-14T00:00:00+07:00" in first.stdout  # the tenant's local time
    assert API_KEY not in first.stdout + first.stderr
    again = await asyncio.to_thread(run, *args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "0 calls first seen by the backfill, 0 changed" in again.stdout
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM analytics.calls")) == 250
        assert (await conn.execute(text("SELECT status, records FROM callstore.ingest_runs ORDER BY run_id"))).all() \
            == [("ok", 250), ("ok", 250)]


async def test_queue_commands(db_url: str, engine: AsyncEngine, fake: str, tmp_path: Path) -> None:
    env = env_for(db_url, fake)
    synced = await asyncio.to_thread(run, "sync-queues", env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "5 queues listed (5 new, 0 removed, 0 renumbered)" in synced.stdout
    mapped = await asyncio.to_thread(run, "queues", "map", "--hotline", "1900 9999", "--queue", "1001227",
                                     env=env, cwd=tmp_path)
    assert mapped.returncode == 0 and "mapped 19009999 to queue 1001227" in mapped.stdout
    listed = await asyncio.to_thread(run, "queues", "list", env=env, cwd=tmp_path)
    assert "19009999" in listed.stdout and "Support" in listed.stdout
    unknown = await asyncio.to_thread(run, "queues", "map", "--hotline", "1900", "--queue", "42", env=env,
                                      cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1].startswith("callstore: error: --queue: no queue 42")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (("backfill", "--since", "yesterday"), True, "--since: 'yesterday' is not an ISO 8601"),
        (("backfill", "--since", "2024-01-14", "--until", "2024-01-13"), True, "--until: must be after --since"),
        (("backfill", "--since", "2024-01-13", "--tenant", "nope"), True, "--tenant: no tenant 'nope'"),
        (("backfill", "--since", "2024-01-13", "--concurrency", "0"), True, "--concurrency: must be between"),
        (("backfill", "--since", "2024-01-13", "--source", "ftp"), True, "--source: must be one of"),
        (("backfill", "--since", "2024-01-13"), False, "ALOHUB_API_KEY is not set"),
    ],
)
def test_bad_backfill_arguments_name_the_argument(argv: tuple[str, ...], env: bool, expected: str) -> None:
    from callstore.cli import build_parser
    from callstore.commands.backfill import plan
    from callstore.runtime import UsageError
    from store.errors import ConfigError
    from tests.sync.alohub import settings_for

    settings = settings_for("http://127.0.0.1:9")
    if not env:
        from store.settings import TenantSettings

        settings = settings_for("http://127.0.0.1:9", tenants=(TenantSettings("default"),))
    with pytest.raises((UsageError, ConfigError)) as info:
        plan(build_parser().parse_args(argv), settings)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_bad_argument_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("backfill", "--since", "2024-01-13", "--until", "soon", env={"ALOHUB_API_URL": "http://127.0.0.1:9/api",
                                                                       "ALOHUB_API_KEY": API_KEY}, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "callstore: error: --until: 'soon' is not an ISO 8601 date or date-time"]


def test_progress_log_line_is_a_sentence_with_rounded_figures() -> None:
    from datetime import datetime, timezone

    from callstore.commands.backfill import progress_sentence
    from sync.backfill import RunReport
    from sync.sources import Window

    t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    r = RunReport(1, "default", "searchCallV2", Window(t, t), windows=10, pages=10, records=1000, announced=1500,
                  announced_windows=3, fetched_pages=12, fetched_records=1200)
    assert progress_sentence(r, 10.0) == ("Backfill of tenant default: 1,200 records fetched of about 5,000 (24.0 %),"
                                          " 1,000 stored; 12 pages, windows 0 of 10, 120 records/s,"
                                          " about 32 s left.")
    r.announced_windows, r.announced = 10, 1250
    assert "fetched of 1,250 (96.0 %)" in progress_sentence(r, 10.0)
