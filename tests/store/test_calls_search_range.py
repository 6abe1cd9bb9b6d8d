"""The call search's time range (`from`, `to` on /ui/calls and /api/calls).

A range reads only its own calls from the list's index (a range months back
walked every newer call before: 4 s on 10M calls), and finds the same calls:
local times in the tenant's zone, times with an offset as given, calls
without a start time in no range.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.calls_query import CallSearch, search_calls, search_sql

T0 = datetime(2026, 9, 1, tzinfo=timezone.utc)


async def _world(engine: AsyncEngine) -> None:
    """Per tenant, one call a minute over 14 days before T0 + 7 days (c0 newest), every 500th without a start."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO callstore.tenants (tenant_id, timezone) "
                                "VALUES ('default', 'Asia/Ho_Chi_Minh'), ('acme', 'UTC')"))
        await conn.execute(text(
            "INSERT INTO callstore.calls (tenant_id, call_id, started_at, direction, first_source) "
            "SELECT t, 'c' || i, CASE WHEN i % 500 = 0 THEN NULL "
            "                         ELSE CAST(:end AS timestamptz) - make_interval(mins => i) END, "
            "       'inbound', 'webhook' "
            "FROM generate_series(0, 20159) i, unnest(ARRAY['default', 'acme']) t"), {"end": T0 + timedelta(days=7)})
        await conn.execute(text("ANALYZE callstore.calls"))


async def _all(engine: AsyncEngine, q: CallSearch) -> list[str]:
    """Every page of the search, in order."""
    out: list[str] = []
    async with engine.connect() as conn:
        while True:
            rows, cursor = await search_calls(conn, q)
            out += [r["call_id"] for r in rows]
            if cursor is None:
                return out
            q = CallSearch(**{**q.__dict__, "after": cursor})


async def _expected(engine: AsyncEngine, tenant: str, lo: datetime, hi: datetime) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT call_id FROM callstore.calls WHERE tenant_id = :t AND started_at >= :lo AND started_at < :hi "
            "ORDER BY started_at DESC, call_id DESC"), {"t": tenant, "lo": lo, "hi": hi})).scalars())


async def test_a_range_finds_its_calls_in_the_tenants_zone(engine: AsyncEngine) -> None:
    await _world(engine)
    naive_lo, naive_hi = datetime(2026, 9, 1), datetime(2026, 9, 1, 6)
    hanoi = timezone(timedelta(hours=7))
    found = await _all(engine, CallSearch(tenant="default", start=naive_lo, end=naive_hi, limit=100))
    assert found == await _expected(engine, "default", naive_lo.replace(tzinfo=hanoi), naive_hi.replace(tzinfo=hanoi))
    assert len(found) == 6 * 60 - 1  # one of them has no start time
    found = await _all(engine, CallSearch(tenant="acme", start=naive_lo, end=naive_hi, limit=100))
    assert found == await _expected(engine, "acme", naive_lo.replace(tzinfo=timezone.utc),
                                    naive_hi.replace(tzinfo=timezone.utc))
    lo, hi = T0 - timedelta(hours=2), T0 + timedelta(minutes=30)
    found = await _all(engine, CallSearch(tenant="default", start=lo, end=hi, limit=100))
    assert found == await _expected(engine, "default", lo, hi) and len(found) == 150
    only_end = await _all(engine, CallSearch(tenant="acme", end=T0 - timedelta(days=6, hours=23), limit=1000))
    assert only_end == await _expected(engine, "acme", T0 - timedelta(days=30), T0 - timedelta(days=6, hours=23))


def _calls_rows_read(node: dict[str, Any]) -> int:
    # What a scan of calls fetched: the rows it returned and those its filter threw away.
    fetched = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
    own = fetched * node["Actual Loops"] if node.get("Relation Name") == "calls" else 0
    return own + sum(_calls_rows_read(child) for child in node.get("Plans", ()))


async def test_a_range_far_back_reads_only_its_calls(engine: AsyncEngine) -> None:
    await _world(engine)
    for start, end in ((datetime(2026, 8, 26), datetime(2026, 8, 26, 0, 30)),
                       (T0 - timedelta(days=5), T0 - timedelta(days=5) + timedelta(minutes=30))):
        sql, params = search_sql(CallSearch(tenant="default", start=start, end=end, limit=50))
        async with engine.connect() as conn:
            plan = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)).scalar_one()
        assert plan[0]["Plan"]["Actual Rows"] == 30
        assert _calls_rows_read(plan[0]["Plan"]) < 200, plan
