"""The growth benchmark's generated calls are what the service itself makes of
their generated raw events: the bench measures realistic rows, not made-up ones."""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.growth.run import detect_layout, load_calls, prepare
from store.ingest import Delivery, ingest
from store.merge import FIELDS
from store.raw_body import unpack
from store.settings import TenantSettings
from store.tenants import sync_tenants

COMPARED = ", ".join((*FIELDS, "queue_id", "merge_ranks", "seen_webhook", "seen_history", "first_source", "flagged"))


async def test_generated_calls_are_the_merge_of_their_raw_events(engine: AsyncEngine, db_url: str) -> None:
    tenants = {t: TenantSettings(t) for t in ("default", "replay")}
    async with engine.begin() as c:
        await sync_tenants(c, list(tenants.values()))
    conn = await asyncpg.connect(db_url)
    try:
        for t in tenants:
            await prepare(conn, t)
        # 5,000 calls at 100 a day: 50 days, every queue, unassigned, outbound and unfinished calls among them.
        await conn.execute("SELECT setseed(0.25)")  # the generator's random(): the same calls every run
        await load_calls(conn, await detect_layout(conn), 0, 5000, datetime(2026, 11, 30, 12, tzinfo=timezone.utc), 100)
        raw = await conn.fetch("SELECT call_id, body, received_at FROM callstore.raw_events "
                               "WHERE tenant_id = 'default' ORDER BY received_at, call_id")
        kinds = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE ended_at IS NULL AND answered_at IS NULL) AS ringing, "
            "count(*) FILTER (WHERE ended_at IS NULL AND answered_at IS NOT NULL) AS talking, "
            "count(*) FILTER (WHERE queue_id IS NULL "
            "AND direction = 'inbound') AS unassigned, count(*) FILTER (WHERE direction = 'outbound') AS outbound "
            "FROM callstore.calls WHERE tenant_id = 'default'")
    finally:
        await conn.close()
    assert len(raw) == 10_000
    assert all(kinds.values()), dict(kinds)

    # The same events through the service's write path, as another tenant.
    deliveries = [Delivery("replay", r["call_id"], "webhook", orjson.loads(unpack(r["body"])), r["received_at"]) for r in raw]
    async with engine.begin() as c:
        for i in range(0, len(deliveries), 500):
            await ingest(c, deliveries[i:i + 500], tenants)

    conn = await asyncpg.connect(db_url)
    try:
        rows = {t: [dict(r) for r in await conn.fetch(
            f"SELECT call_id, {COMPARED} FROM callstore.calls WHERE tenant_id = $1 ORDER BY call_id", t)]
            for t in tenants}
    finally:
        await conn.close()
    assert len(rows["default"]) == 5000
    assert rows["replay"] == rows["default"]
