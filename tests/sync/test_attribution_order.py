"""Queue attribution does not depend on which job ran first or concurrently.

Catalogue syncs, manual mapping changes, webhook batches and backfill pages
run as concurrent tasks, each on its own connection, in a random order and
with random pauses inside their transactions (a slow network, a slow disk).
Afterwards every call's queue must be what the final catalogue and mappings
say for its hotline, and the rollups must count the calls of each queue.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.rollups import UNASSIGNED_KEY, refresh_rollups
from store.engine import create_engine
from store.ingest import Delivery, ingest
from store.settings import TenantSettings
from store.tenants import sync_tenants
from sync.queues import remove_mapping, set_mapping, store_catalogue

TENANTS = {"default": TenantSettings("default"), "acme": TenantSettings("acme", timezone="Europe/Paris")}
HOTLINES = [f"1900{n:04d}" for n in range(1001, 1007)]
QUEUES = [11, 12, 13, 14]
DAY = datetime(2024, 3, 4, 2, 0, tzinfo=timezone.utc)


def delivery(rng: random.Random, tenant: str, call_id: str, source: str) -> Delivery:
    start = DAY + timedelta(minutes=rng.randrange(0, 600))
    payload: dict[str, object] = {
        "call_id": call_id,
        "hotline": rng.choice(HOTLINES),
        "direction": rng.choice(["inbound", "inbound", "inbound", "outbound"]),
        "starttime": start.isoformat(),
    }
    if rng.random() < 0.5:
        payload["endtime"] = (start + timedelta(seconds=rng.randrange(5, 300))).isoformat()
        payload["hangup_by"] = "customer"
    if source == "history":
        payload["direction"] = str(payload["direction"]).upper()
    return Delivery(tenant, call_id, source, payload, datetime.now(timezone.utc))  # type: ignore[arg-type]


async def pause(rng: random.Random) -> None:
    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003, 0.01]))


async def worker(engine: AsyncEngine, seed: int, ops: int) -> None:
    rng = random.Random(seed)
    for _ in range(ops):
        tenant = rng.choice(list(TENANTS))
        kind = rng.choice(["catalogue", "mapping", "webhook", "webhook", "backfill"])
        async with engine.begin() as conn:
            if kind == "catalogue":
                listed = rng.sample(QUEUES, rng.randrange(0, len(QUEUES) + 1))
                records = [{"callinId": q, "callinName": f"Q{q}", "callinNumber": rng.choice(HOTLINES)}
                           for q in listed]
                await store_catalogue(conn, TENANTS[tenant], records, datetime.now(timezone.utc))
            elif kind == "mapping":
                if rng.random() < 0.7:
                    await set_mapping(conn, tenant, rng.choice(HOTLINES), rng.choice(QUEUES))
                else:
                    await remove_mapping(conn, tenant, rng.choice(HOTLINES))
            else:
                source, size = ("webhook", rng.randrange(1, 4)) if kind == "webhook" else ("history", 25)
                batch = [delivery(rng, tenant, f"c{rng.randrange(0, 120)}", source) for _ in range(size)]
                await ingest(conn, batch, TENANTS)
            await pause(rng)  # commit later: the window the other jobs race into


async def expected_queues(engine: AsyncEngine) -> dict[tuple[str, str], int | None]:
    """Each call's queue computed directly: the catalogue's number, else the mapping, else none."""
    async with engine.connect() as conn:
        catalogue: dict[tuple[str, str], int] = {}
        for t, q, number in await conn.execute(text(
                "SELECT tenant_id, queue_id, callin_number_canonical FROM callstore.queues"
                " WHERE removed_at IS NULL AND callin_number_canonical IS NOT NULL")):
            catalogue[(t, number)] = min(q, catalogue.get((t, number), q))
        mappings = {(t, h): q for t, h, q in await conn.execute(text(
            "SELECT tenant_id, hotline, queue_id FROM callstore.queue_mappings"))}
        calls = (await conn.execute(text("SELECT tenant_id, call_id, direction, hotline FROM callstore.calls"))).all()
    out: dict[tuple[str, str], int | None] = {}
    for t, c, direction, hotline in calls:
        queue = None
        if direction == "inbound" and hotline is not None:
            queue = catalogue.get((t, hotline), mappings.get((t, hotline)))
        out[(t, c)] = queue
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_attribution_is_independent_of_job_order(db_url: str, seed: int) -> None:
    engine = create_engine(db_url, pool_size=8)
    try:
        async with engine.begin() as conn:
            await sync_tenants(conn, list(TENANTS.values()))
        await asyncio.gather(*(worker(engine, seed * 100 + w, 30) for w in range(8)))

        expected = await expected_queues(engine)
        async with engine.connect() as conn:
            stored = {(t, c): q for t, c, q in await conn.execute(text(
                "SELECT tenant_id, call_id, queue_id FROM callstore.calls"))}
        assert len(stored) > 100
        wrong = {k: (stored[k], v) for k, v in expected.items() if stored[k] != v}
        assert wrong == {}, f"calls in the wrong queue (stored, expected): {wrong}"

        # The rollups follow: offered inbound calls per tenant and queue.
        async with engine.begin() as conn:
            await refresh_rollups(conn)
        async with engine.connect() as conn:
            inbound = {(t, c) for t, c in await conn.execute(text(
                "SELECT tenant_id, call_id FROM callstore.calls WHERE direction = 'inbound'"
                " AND started_at IS NOT NULL"))}
            rolled = {(t, q): n for t, q, n in await conn.execute(text(
                "SELECT tenant_id, queue_key, sum(offered) FROM callstore.queue_rollup_daily GROUP BY 1, 2"))}
        counted = Counter((t, UNASSIGNED_KEY if expected[(t, c)] is None else expected[(t, c)]) for t, c in inbound)
        assert rolled == dict(counted)
    finally:
        await engine.dispose()
