"""Chaos (issue 7): the fake Alohub's sender streams a few thousand webhook
events, with duplicates, reordering and some calls never delivered, while the
service is killed with -9 twice and PostgreSQL is stopped and started once.
Then `callstore backfill` runs against the fake's history.

Meanwhile the service's recordings job archives the calls' recordings (a
few are slow, so that passes are under way); PostgreSQL is stopped while one
holds claims.

Asserted: every event answered 200 is in the store; after the backfill the
store equals the fake's history exactly (count and fields); no call twice;
the spool is empty; every recording the fake serves is stored, with its
SHA-256. The figures are printed in pytest's terminal summary.

Only 127.0.0.1; every process started here is stopped by PID in `finally`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import pytest

from sync.fake import SendReport, events_for, generate_calls, make_state, recording_digest, running_fake, send_events
from tests.chaos.postgres import StoppablePostgres
from tests.chaos.service import ServiceProcess
from tests.sync.alohub import COMPARED, expected_row

KEY = "chaos-webhook-key-1"
API_KEY = "chaos-api-key-0123"
CALLS = 1500
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2026, 11, 20, 7, 0, tzinfo=ZONE)
UNTIL = datetime(2026, 11, 20, 19, 0, tzinfo=ZONE)
MEDIA_SIZE = 4096
#: Recordings served slowly (ms for the whole body), so that passes are under way.
SLOW = {"every": 25, "ms": 3000}
#: Short leases, so that claims cut by the restarts lapse within the test.
LEASE_S = 10


async def claims_held(db_url: str) -> None:
    """Wait (bounded: 30 s) until a recordings pass holds claims, i.e. is under way."""
    conn = await asyncpg.connect(db_url)
    try:
        for _ in range(300):
            if await conn.fetchval("SELECT count(*) FROM callstore.recordings"
                                   " WHERE status = 'pending' AND claimed_by IS NOT NULL"):
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError("no recordings pass was under way")


@pytest.mark.chaos
async def test_kill_9_and_postgres_restart_lose_nothing_and_backfill_converges(
        tmp_path: Path, report_figures: Any) -> None:
    calls = generate_calls(CALLS, seed=7, start=SINCE, end=UNTIL, tz="Asia/Ho_Chi_Minh")
    pg = StoppablePostgres(tmp_path / "pg")
    svc: ServiceProcess | None = None
    try:
        state = make_state(calls, api_key=API_KEY)
        state.media_size, state.media_auth = MEDIA_SIZE, False
        with running_fake(state) as fake:
            db_url = await pg.start()
            data_dir = tmp_path / "data"
            # No API key for the service: its own scheduled backfill stays off,
            # so what the backfill recovers is measured by the one run below.
            # Its recordings job runs every 5 s against the fake's media server.
            svc = ServiceProcess({"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(data_dir),
                                  "ALOHUB_WEBHOOK_KEYS": KEY, "ALOHUB_MEDIA_URL": fake,
                                  "CALLSTORE_RECORDINGS_INTERVAL": "5", "CALLSTORE_RECORDINGS_RATE": "0",
                                  "CALLSTORE_RECORDINGS_CONCURRENCY": "8", "CALLSTORE_RECORDINGS_LEASE": str(LEASE_S)},
                                 tmp_path / "work")
            media = sorted(state.calls.media_paths)
            async with httpx.AsyncClient(base_url=fake) as client:
                slow = {path: f"slow:{SLOW['ms']}" for path in media[::SLOW["every"]]}
                assert (await client.post("/_fake/faults", json={"media": slow})).status_code == 200
            await svc.start()
            events = events_for(calls, fake)
            assert len(events) >= 2000
            report = SendReport()

            async def at(acknowledged: int) -> None:
                while report.ok < acknowledged:
                    await asyncio.sleep(0.01)

            spooled_seen: list[Path] = []

            async def chaos() -> None:
                assert svc is not None
                await at(300)
                svc.kill()  # 1: mid-stream, database up
                await svc.start()
                await at(800)
                await claims_held(db_url)
                await pg.stop()  # events go to the spool meanwhile; the recordings pass is cut
                await at(1200)
                spooled_seen.extend(data_dir.glob("spool/*/*.seg"))
                svc.kill()  # 2: with events in its spool; the next process adopts them
                await pg.start()
                await svc.start()

            sending = send_events(f"{svc.url}/webhooks/alohub", KEY, events, concurrency=8, drop=0.03,
                                  duplicate=0.08, reorder=True, seed=11, retry_connect_errors=True,
                                  deadline_s=150, max_attempts=100_000, timeout_s=30, report=report)
            await asyncio.gather(chaos(), sending)
            assert svc.starts == 3 and spooled_seen, "the chaos did not happen as planned"
            assert report.gave_up == [] and report.unacknowledged == [], report.summary()
            assert report.dropped_call_ids and report.duplicated and report.calls_out_of_order

            # The spool ends empty (the 10 s drain bound of the spool is asserted in
            # tests/receiver/test_drain.py; here the database has been back for a while).
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(200):
                    ready = (await client.get(f"{svc.url}/readyz")).json()
                    if ready.get("ready") and ready["spool"]["depth"] == 0 and not list(data_dir.glob("spool/*/*.seg")):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"the spool did not drain: {ready}")

            # Every acknowledged event is stored, as often as acknowledged at least.
            conn = await asyncpg.connect(db_url)
            try:
                raw = {bytes(r["body_sha256"]): r["deliveries"]
                       for r in await conn.fetch("SELECT body_sha256, deliveries FROM callstore.raw_events")}
                before_backfill = await conn.fetchval("SELECT count(*) FROM callstore.calls")
            finally:
                await conn.close()
            acknowledged: dict[bytes, int] = {}
            for event in report.acknowledged:
                digest = hashlib.sha256(orjson.dumps(event)).digest()
                acknowledged[digest] = acknowledged.get(digest, 0) + 1
            missing = [d.hex() for d in acknowledged if d not in raw]
            assert not missing, f"{len(missing)} acknowledged events are not in the store"
            assert all(raw[d] >= n for d, n in acknowledged.items())
            assert before_backfill == CALLS - len(report.dropped_call_ids)

            # The backfill, as an operator would run it, against the fake's history.
            backfill = subprocess.run(
                [sys.executable, "-m", "callstore", "backfill", "--since", SINCE.date().isoformat(),
                 "--until", "2026-11-21", "--concurrency", "4"],
                env={**svc.env, "ALOHUB_API_URL": f"{fake}/api", "ALOHUB_XAPI_URL": fake, "ALOHUB_API_KEY": API_KEY,
                     "ALOHUB_MEDIA_URL": fake, "ALOHUB_MEDIA_HOSTS": "127.0.0.1"},
                cwd=svc.workdir, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            )
            assert backfill.returncode == 0, backfill.stdout[-2000:] + backfill.stderr[-2000:]
            assert API_KEY not in backfill.stdout + backfill.stderr

            conn = await asyncpg.connect(db_url)
            try:
                columns = ", ".join(f"a.{c}" for c in COMPARED)
                rows = await conn.fetch(f"SELECT {columns}, c.recording_url FROM analytics.calls a"
                                        " JOIN callstore.calls c USING (tenant_id, call_id)")
                distinct = await conn.fetchval("SELECT count(DISTINCT (tenant_id, call_id)) FROM callstore.calls")
                recovered = await conn.fetchval(
                    "SELECT coalesce(sum(first_seen_by_backfill), 0) FROM analytics.ingest_ledger")
                progress = await conn.fetchval("SELECT count(*) FROM callstore.spool_progress")
            finally:
                await conn.close()
            stored = {r["call_id"]: dict(r) for r in rows}
            assert len(rows) == distinct == len(stored) == CALLS, "a call is missing or stored twice"
            for call in calls:
                want = expected_row(call.as_record(), fake)
                got = stored[call.call_id]
                assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}, call.call_id
                assert got["recording_url"] == want["recording_url"], call.call_id
            assert recovered == len(report.dropped_call_ids)
            assert progress == 0

            # Every recording the fake serves is stored, byte for byte, though
            # passes were cut by two kills and a restart.
            conn = await asyncpg.connect(db_url)
            try:
                for _ in range(1200):  # bounded: 120 s
                    archive = dict(await conn.fetch(
                        "SELECT status, count(*) FROM callstore.recordings GROUP BY status"))
                    if archive.get("stored", 0) >= len(media):
                        break
                    await asyncio.sleep(0.1)
                stored_hashes = {r["call_id"]: (r["sha256"], r["size"]) for r in await conn.fetch(
                    "SELECT call_id, sha256, size FROM callstore.recordings WHERE status = 'stored'")}
            finally:
                await conn.close()
            assert archive == {"stored": len(media)}, archive
            assert stored_hashes == {call.call_id: recording_digest(call.recording_url, MEDIA_SIZE)
                                     for call in calls if call.recording_url}

            drained = adopted = 0
            for line in svc.log_text().splitlines():
                try:
                    message = json.loads(line).get("message", "")
                except ValueError:
                    continue
                if message.startswith("drained "):
                    drained += int(message.split()[1])
                elif message.startswith("adopted the spool"):
                    adopted += int(message.rsplit(": ", 1)[1].split()[0])
            assert drained > 0, "nothing went through the spool"
            figures = {
                "events sent": report.sent, "200s": report.ok, "503s": report.unavailable,
                "other statuses": report.other, "connection errors retried": report.connection_errors,
                "duplicates sent": report.duplicated, "calls out of order": report.calls_out_of_order,
                "calls never delivered": len(report.dropped_call_ids),
                "spooled (drained from the spool)": drained, "adopted after kill -9": adopted,
                "calls recovered by backfill": recovered, "calls stored": len(stored),
                "recordings stored": archive.get("stored", 0),
            }
            report_figures(figures)
    finally:
        if svc is not None:
            svc.stop()
        pg.stop_now()
