"""Item 7: a reader cannot make the server work hard or fail.

Before: `/api/calls` sorted the whole table for every page, values out of
range (`queue=99999999999999999999`, `from=0001-01-01`) gave HTTP 500, and
the logged traceback carried the SQL and its parameters. Now: an index in
the search's order, every parameter out of range is a 400 naming it, and no
error text carries a statement's parameters.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.calls_query import CallSearch, Cursor, search_sql
from store.engine import create_engine
from tests.security.world import World

REPORT = {"from": "2026-11-19", "to": "2026-11-22"}

BAD: list[tuple[str, dict[str, str], str]] = [
    ("/api/calls", {"queue": "99999999999999999999"}, "queue"),
    ("/api/calls", {"queue": "-99999999999999999999"}, "queue"),
    ("/api/calls", {"from": "0001-01-01"}, "from"),
    ("/api/calls", {"to": "9999-12-31T23:59:59"}, "to"),
    ("/api/calls", {"limit": "1000000000"}, "limit"),
    ("/api/calls", {"limit": "9" * 400}, "limit"),
    ("/api/calls", {"cursor": "!!!"}, "cursor"),
    ("/api/calls", {"cursor": "WyIwMDAxLTAxLTAxIiwiZGVmYXVsdCIsIngiXQ"}, "cursor"),  # naive time
    ("/api/calls", {"phone": "1" * 100}, "phone"),
    ("/api/calls", {"tenant": "x" * 100}, "tenant"),
    ("/api/reports/queues", {**REPORT, "queue": "99999999999999999999"}, "queue"),
    ("/api/reports/queues", {**REPORT, "from": "0001-01-01"}, "from"),
    ("/api/reports/queues", {**REPORT, "to": "9999-12-31"}, "to"),
    ("/api/reports/queues", {**REPORT, "from": "2026-11-19T00:00:00+99:00"}, "from"),
    ("/api/reports/queues", {**REPORT, "interval": "x" * 100}, "interval"),
    ("/api/reports/queues", {**REPORT, "format": "a\x00b"}, "format"),
    ("/api/reports/queues", {"from": "0001-01-01", "interval": "day"}, "from"),
    ("/api/audit/recordings", {"limit": "1000000"}, "limit"),
    ("/api/audit/recordings", {"to": "0001-01-01"}, "to"),
]


async def test_out_of_range_is_400_naming_the_parameter_without_traceback(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        for path, params, name in BAD:
            r = await world.client.get(path, params=params, headers=world.auth("default", "admin"))
            assert r.status_code == 400, (path, params, r.text)
            assert r.json()["error"] == "bad_request" and r.json()["detail"].startswith(f"{name}:"), r.json()
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]


async def test_errors_never_carry_parameters(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa_exc.DBAPIError) as caught:
                # An error whose own text does not quote the value: only the
                # parameter list that SQLAlchemy appends could show it.
                await conn.execute(text("SELECT 1 / 0 WHERE CAST(:x AS text) IS NOT NULL"),
                                   {"x": "0912345678-secret-value"})
    finally:
        await engine.dispose()
    assert "secret-value" not in str(caught.value) and "parameters hidden" in str(caught.value)


def _plan(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", ()) for n in _plan(child))]


async def test_the_search_reads_its_index_in_order(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO callstore.tenants (tenant_id, timezone) VALUES ('default', 'UTC'), ('acme', 'UTC')"))
        await conn.execute(text(
            "INSERT INTO callstore.calls (tenant_id, call_id, started_at, direction, first_source) "
            "SELECT CASE WHEN i % 2 = 0 THEN 'default' ELSE 'acme' END, 'c' || i, "
            "CASE WHEN i % 97 = 0 THEN NULL ELSE now() - make_interval(secs => i) END, 'inbound', 'webhook' "
            "FROM generate_series(1, 20000) i"))
        await conn.execute(text("ANALYZE callstore.calls"))
        deep = Cursor(None, "default", "c5000")
        for q in (CallSearch(tenant="default", limit=50),
                  CallSearch(tenant="default", limit=50, after=Cursor(datetime.now(timezone.utc), "default", "c10000")),
                  CallSearch(tenant="default", limit=50, after=deep)):
            sql, params = search_sql(q)
            plan = (await conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), params)).scalar_one()
            nodes = _plan(plan[0]["Plan"])
            kinds = [n["Node Type"] for n in nodes]
            assert "Sort" not in kinds, kinds
            scans = [n for n in nodes if n.get("Relation Name") == "calls"]
            assert scans and scans[0].get("Index Name") == "calls_search_order", kinds
            if q.after is not None:
                assert "call_id" in scans[0].get("Index Cond", ""), scans[0]
