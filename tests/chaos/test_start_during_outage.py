"""A receiver (re)started while its PostgreSQL is down still acknowledges
webhooks (into the spool), and everything lands once the database is back:
for a database that was already migrated, and for a fresh one whose schema
the receiver applies when it answers.

Only 127.0.0.1; every process started here is stopped by PID in `finally`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from tests.chaos.postgres import StoppablePostgres
from tests.chaos.service import ServiceProcess

KEY = "outage-webhook-key-1"


def event(i: int) -> bytes:
    return orjson.dumps({"call_id": f"outage-{i:04d}", "direction": "inbound", "call_status": "answered",
                         "starttime": "2026-11-30 09:00:00", "hotline": "19001234", "caller_number": "0912345678"})


async def stored(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM callstore.calls WHERE call_id LIKE 'outage-%'"))
    finally:
        await conn.close()


@pytest.mark.chaos
@pytest.mark.parametrize("migrated", [True, False], ids=["migrated", "fresh"])
async def test_a_receiver_started_during_an_outage_acknowledges_and_drains_later(
        tmp_path: Path, migrated: bool) -> None:
    pg = StoppablePostgres(tmp_path / "pg")
    svc: ServiceProcess | None = None
    try:
        db_url = await pg.start()
        env = {"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(tmp_path / "data"), "ALOHUB_WEBHOOK_KEYS": KEY}
        svc = ServiceProcess(env, tmp_path / "work", role="receiver")
        if migrated:  # a receiver that ran before: schema and tenant in place
            await svc.start()
            await svc.terminate()
        await pg.stop()

        await svc.start()  # the database is down: it starts all the same
        async with httpx.AsyncClient(timeout=10) as client:
            statuses = [(await client.post(f"{svc.url}/webhooks/alohub", content=event(i),
                                           headers={"Authorization": KEY})).status_code for i in range(20)]
            assert statuses == [200] * 20
            ready = await client.get(f"{svc.url}/readyz")
            assert ready.status_code == 503 and ready.json()["spool"]["depth"] == 20

            await pg.start()
            for _ in range(300):  # bounded: 30 s
                ready = await client.get(f"{svc.url}/readyz")
                if ready.status_code == 200 and ready.json()["spool"]["depth"] == 0:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"not drained: {ready.text}\n{svc.log_tail()}")
        assert await stored(db_url) == 20
        assert "starting anyway" in svc.log_text()
        assert await svc.terminate() == 0
    finally:
        if svc is not None:
            svc.stop()
        pg.stop_now()

