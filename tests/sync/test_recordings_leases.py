"""Short leases: a claimed recording belongs to one run for at most 2 minutes,
renewed while it downloads; after a `kill -9` of the run or a restart of
PostgreSQL, claimed recordings are due again within 2 minutes.

Real processes (`callstore recordings fetch`, killed by PID), a real
PostgreSQL of the test's own that is stopped and started, the fake Alohub on
127.0.0.1 trickling its recordings so that the runs are cut mid-download.
Waits are bounded loops on observed states, never timing assertions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine
from store.recording_store import LocalRecordingStore
from store.tenants import sync_tenants
from sync.fake import running_fake
from sync.recordings import FetchOptions, Fetcher
from tests.callstore.test_recordings_cli import cli_env
from tests.chaos.postgres import StoppablePostgres
from tests.recording_fixtures import archive_settings, fake_state, load, with_recordings

LEASE_LIMIT_S = 120
FAST = FetchOptions(concurrency=4, rate=0, max_attempts=3, backoff=(0,))


async def until(engine: AsyncEngine, sql: str, *, tries: int = 300) -> None:
    """Poll until `sql` is true (bounded: 300 x 0.1 s)."""
    for _ in range(tries):
        try:
            async with engine.connect() as conn:
                if await conn.scalar(text(sql)):
                    return
        except Exception:  # noqa: BLE001 - the database may be restarting
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"never true: {sql}")


async def slow_media(base: str, paths: list[str], ms: int) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post("/_fake/faults", json={"media": {p: f"slow:{ms}" for p in paths}})
        assert response.status_code == 200


async def leases(engine: AsyncEngine) -> list[tuple[str, int, float, str | None]]:
    """(status, attempts, seconds until next_attempt_at, claimed_by) of every row."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT status, attempts, extract(epoch FROM next_attempt_at - now())::float8, claimed_by "
            "FROM callstore.recordings ORDER BY call_id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_killed_run_leaves_claims_that_come_back_within_2_minutes(
        db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=30)
    records = with_recordings(state)[:6]
    data_dir = tmp_path / "data"
    proc: subprocess.Popen[bytes] | None = None
    with running_fake(state) as base:
        settings = archive_settings(base, data_dir)
        await load(engine, settings, records)
        await slow_media(base, [str(r["recording_url"]) for r in records], 60_000)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CALLSTORE_", "ALOHUB_"))},
               **cli_env(db_url, data_dir, base), "CALLSTORE_LOG_FORMAT": "json"}
        try:
            proc = subprocess.Popen([sys.executable, "-m", "callstore", "recordings", "fetch", "--concurrency", "6"],
                                    env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Mid-pass: every recording claimed and its download under way.
            await until(engine, "SELECT count(*) = 6 FROM callstore.recordings WHERE claimed_by IS NOT NULL")
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(300):
                    if (await client.get("/_fake/stats")).json()["requests"].get("media", 0) >= 6:
                        break
                    await asyncio.sleep(0.1)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

        # Nothing was recorded for them, and their claims end within 2 minutes.
        after_kill = await leases(engine)
        assert [(s, a) for s, a, _, _ in after_kill] == [("pending", 0)] * 6
        assert all(0 < left <= LEASE_LIMIT_S for _, _, left, _ in after_kill), after_kill

        # Two minutes later (the clock moved by hand), the next run takes them.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.recordings SET next_attempt_at = next_attempt_at "
                                    "- make_interval(secs => :s)"), {"s": LEASE_LIMIT_S})
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/_fake/faults", json={"clear_media": True})
        report = await Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run()
    assert report.counts == {"stored": 6}


async def test_the_lease_is_renewed_while_a_download_runs(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=20)
    record = with_recordings(state)[0]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, [record])
        # A download that outlasts several leases of 3 s.
        await slow_media(base, [str(record["recording_url"])], 8000)
        fetcher = Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), replace(FAST, lease_s=3))
        run = asyncio.create_task(fetcher.run())
        try:
            await until(engine, "SELECT count(*) = 1 FROM callstore.recordings WHERE claimed_by IS NOT NULL")
            async with engine.connect() as conn:
                first = await conn.scalar(text("SELECT next_attempt_at FROM callstore.recordings"))
            # The lease moves forward while the run holds it, and never further than one lease.
            await until(engine, f"SELECT next_attempt_at > '{first.isoformat()}' FROM callstore.recordings "
                                "WHERE status = 'pending'")
            [(status, attempts, left, holder)] = await leases(engine)
            assert status == "pending" and attempts == 0 and holder == fetcher.token and left <= 3
            report = await asyncio.wait_for(run, 60)
        finally:
            run.cancel()
    assert report.counts == {"stored": 1}
    [(status, _, _, holder)] = await leases(engine)
    assert status == "stored" and holder is None


async def test_a_cancelled_run_releases_its_claims(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=20)
    records = with_recordings(state)[:3]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, records)
        await slow_media(base, [str(r["recording_url"]) for r in records], 30_000)
        run = asyncio.create_task(Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run())
        await until(engine, "SELECT count(*) = 3 FROM callstore.recordings WHERE claimed_by IS NOT NULL")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    rows = await leases(engine)
    assert [(s, a, h) for s, a, _, h in rows] == [("pending", 0, None)] * 3
    assert all(left <= 0 for _, _, left, _ in rows)  # due now: the next run takes them at once
    assert not any(settings.recordings_dir.joinpath(".partial").iterdir())


@pytest.mark.chaos
async def test_a_postgres_restart_mid_pass_leaves_claims_that_come_back_within_2_minutes(tmp_path: Path) -> None:
    state = fake_state(calls=30)
    records = with_recordings(state)[:6]
    # Not under pytest's temporary root: another pytest run resets its
    # permissions, and the server's own user would lose its way in.
    pg_dir = Path(tempfile.mkdtemp(prefix="callstore-test-leases-pg-"))
    pg = StoppablePostgres(pg_dir)
    engine: AsyncEngine | None = None
    try:
        url = await pg.start()
        engine = create_engine(url, pool_size=4)
        from store import migrate

        await migrate.upgrade(engine)
        with running_fake(state) as base:
            settings = archive_settings(base, tmp_path / "data")
            async with engine.begin() as conn:
                await sync_tenants(conn, settings.tenants)
            await load(engine, settings, records)
            await slow_media(base, [str(r["recording_url"]) for r in records], 3000)
            fetcher = Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), replace(FAST, concurrency=6))
            run = asyncio.create_task(fetcher.run())
            await until(engine, "SELECT count(*) = 6 FROM callstore.recordings WHERE claimed_by IS NOT NULL")
            await pg.stop()
            # The run ends by itself (cut from its database), however it ends.
            try:
                await asyncio.wait_for(run, 60)
            except Exception:  # noqa: BLE001 - an outage may end the run with the database's error
                pass
            await pg.start()
            after = await leases(engine)
            stuck = [r for r in after if r[0] == "pending"]
            assert stuck, "the restart came too late to cut the pass"
            assert all(left <= LEASE_LIMIT_S for _, _, left, _ in stuck), after
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE callstore.recordings SET next_attempt_at = next_attempt_at "
                                        "- make_interval(secs => :s)"), {"s": LEASE_LIMIT_S})
            async with httpx.AsyncClient(base_url=base) as client:
                await client.post("/_fake/faults", json={"clear_media": True})
            await Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run()
        assert {s for s, _, _, _ in await leases(engine)} == {"stored"}
    finally:
        if engine is not None:
            await engine.dispose()
        pg.stop_now()
        shutil.rmtree(pg_dir, ignore_errors=True)
