"""The call search's recording filter (`recording=yes|no` on /ui/calls and /api/calls).

It keeps the meaning of the view's recording_status (a recording row of the
call's own tenant with status 'stored'), and it no longer reads every call of
the tenant to find out: with nothing stored, the search reads no call at all
(it called a function per call before, over a minute on 10M calls).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.calls_query import CallSearch, search_calls, search_sql


async def _world(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO callstore.tenants (tenant_id, timezone) VALUES ('default', 'UTC'), ('acme', 'UTC')"))
        await conn.execute(text(
            "INSERT INTO callstore.calls (tenant_id, call_id, started_at, direction, first_source, recording_url) "
            "SELECT t, 'c' || i, now() - make_interval(secs => i), 'inbound', 'webhook', "
            "       CASE WHEN i % 3 = 0 THEN 'https://media.example/' || i || '.mp3' END "
            "FROM generate_series(1, 40) i, unnest(ARRAY['default', 'acme']) t"))
        # default: c3 and c6 stored, c9 pending, c12 failed, c15 purged; acme: only c18 stored
        # (so acme's c3, whose id default has stored, must not count as stored for acme).
        await conn.execute(text(
            "INSERT INTO callstore.recordings (tenant_id, call_id, status, url) VALUES "
            "('default', 'c3', 'stored', 'u'), ('default', 'c6', 'stored', 'u'), ('default', 'c9', 'pending', 'u'), "
            "('default', 'c12', 'failed', 'u'), ('default', 'c15', 'purged', 'u'), ('acme', 'c18', 'stored', 'u')"))


async def _ids(engine: AsyncEngine, q: CallSearch) -> set[str]:
    async with engine.connect() as conn:
        rows, cursor = await search_calls(conn, q)
    assert cursor is None
    return {r["call_id"] for r in rows}


async def test_the_filter_means_what_the_views_recording_status_says(engine: AsyncEngine) -> None:
    await _world(engine)
    async with engine.connect() as conn:
        status = {(r.tenant_id, r.call_id): r.recording_status for r in (await conn.execute(text(
            "SELECT tenant_id, call_id, recording_status FROM analytics.calls"))).all()}
    for tenant in ("default", "acme"):
        stored = {c for (t, c), s in status.items() if t == tenant and s == "stored"}
        others = {c for (t, c), s in status.items() if t == tenant and s != "stored"}
        assert await _ids(engine, CallSearch(tenant=tenant, has_recording=True, limit=100)) == stored
        assert await _ids(engine, CallSearch(tenant=tenant, has_recording=False, limit=100)) == others
    assert await _ids(engine, CallSearch(tenant="default", has_recording=True, limit=100)) == {"c3", "c6"}
    assert await _ids(engine, CallSearch(tenant="acme", has_recording=True, limit=100)) == {"c18"}


def _calls_rows_read(node: dict[str, Any]) -> int:
    # What the scan fetched: the rows it returned and those its filter threw away.
    fetched = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
    own = fetched * node["Actual Loops"] if node.get("Relation Name") == "calls" else 0
    return own + sum(_calls_rows_read(child) for child in node.get("Plans", ()))


async def test_with_few_recordings_the_search_does_not_read_every_call(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO callstore.tenants (tenant_id, timezone) VALUES ('default', 'UTC')"))
        await conn.execute(text(
            "INSERT INTO callstore.calls (tenant_id, call_id, started_at, direction, first_source) "
            "SELECT 'default', 'c' || i, now() - make_interval(secs => i), 'inbound', 'webhook' "
            "FROM generate_series(1, 20000) i"))
        await conn.execute(text(
            "INSERT INTO callstore.recordings (tenant_id, call_id, status, url) "
            "SELECT 'default', 'c' || i, 'stored', 'u' FROM generate_series(19990, 20000) i"))
        await conn.execute(text("ANALYZE callstore.calls, callstore.recordings"))
        sql, params = search_sql(CallSearch(tenant="default", has_recording=True, limit=50))
        plan = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)).scalar_one()
    root = plan[0]["Plan"]
    assert root["Actual Rows"] == 11
    assert _calls_rows_read(root) < 1000, plan
