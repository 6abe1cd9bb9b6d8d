"""Chaos: ~1,000 webhook events while the service is killed with -9 twice and
PostgreSQL is stopped and started once. Every acknowledged event must be in
the store, counted no more often than it was sent, and the spool must drain.

Only 127.0.0.1; every process started here is stopped by PID in `finally`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.chaos.events import call_events
from tests.chaos.postgres import StoppablePostgres
from tests.chaos.service import ServiceProcess

KEY = "chaos-webhook-key-1"
WORKERS = 8


@pytest.mark.chaos
async def test_kill_9_and_postgres_restart_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    pg = StoppablePostgres(tmp_path / "pg")
    svc: ServiceProcess | None = None
    try:
        db_url = await pg.start()
        data_dir = tmp_path / "data"
        svc = ServiceProcess({"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(data_dir), "ALOHUB_WEBHOOK_KEYS": KEY},
                             tmp_path / "work")
        await svc.start()
        bodies = call_events(400)
        assert len(bodies) >= 1000
        acked: Counter[bytes] = Counter()
        attempts: Counter[bytes] = Counter()
        final: Counter[int] = Counter()
        next_index = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 100

        async def sender(client: httpx.AsyncClient) -> None:
            nonlocal next_index
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                while True:  # retry on connection errors only, like a plain webhook sender
                    assert loop.time() < deadline, "the service did not come back"
                    attempts[body] += 1
                    try:
                        r = await client.post(f"{svc.url}/webhooks/alohub", content=body, headers={"Authorization": KEY})
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                        continue
                    final[r.status_code] += 1
                    if r.status_code == 200:
                        acked[body] += 1
                    break

        async def at(count: int) -> None:
            while sum(acked.values()) < count:
                await asyncio.sleep(0.01)

        async def chaos() -> None:
            assert svc is not None
            await at(150)
            svc.kill()  # 1: mid-stream, database up
            await svc.start()
            await at(350)
            await pg.stop()  # events go to the spool meanwhile
            await at(550)
            spooled = list(data_dir.glob("spool/*/*.seg"))
            svc.kill()  # 2: with events in its spool; the next process adopts them
            assert spooled, "nothing was spooled while PostgreSQL was down"
            await pg.start()
            await svc.start()

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(chaos(), *[sender(client) for _ in range(WORKERS)])

        assert final == Counter({200: len(bodies)}), final
        # The spool drains to empty (SPEC 5.4: within 10 s of the database being back).
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(150):
                ready = (await client.get(f"{svc.url}/readyz")).json()
                if ready.get("ready") and ready["spool"]["depth"] == 0 and not list(data_dir.glob("spool/*/*.seg")):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the spool did not drain: {ready}")

        conn = await asyncpg.connect(db_url)
        try:
            raw = {bytes(r["body_sha256"]): r["deliveries"]
                   for r in await conn.fetch("SELECT body_sha256, deliveries FROM callstore.raw_events")}
            calls = await conn.fetch("SELECT call_id, ended_at FROM callstore.calls")
            progress = await conn.fetchval("SELECT count(*) FROM callstore.spool_progress")
        finally:
            await conn.close()
        for body, n in acked.items():
            digest = hashlib.sha256(body).digest()
            assert digest in raw, f"an acknowledged event is missing: {body[:60]!r}"
            # Counted at least as often as acknowledged, never more often than sent.
            assert n <= raw[digest] <= attempts[body], (body[:60], n, raw[digest], attempts[body])
        assert len(raw) == len(set(bodies))
        assert len(calls) == len({c["call_id"] for c in calls}) == 400
        assert all(c["ended_at"] is not None for c in calls)  # every call's final event landed and merged
        assert progress == 0
        assert svc.starts == 3
    finally:
        if svc is not None:
            svc.stop()
        pg.stop_now()
