"""Upgrading a database filled by the previous version (revision 0013) to partitioned raw
events keeps every raw event, and deduplication stays exact for the rows it moved."""

from __future__ import annotations

import importlib.util
import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import text

from store import migrate
from store.engine import create_engine
from store.ingest import Delivery, ingest
from store.raw_body import unpack
from store.settings import TenantSettings
from store.tenants import sync_tenants
from tests.store import ingest_0013
from tests.store.raw_mix import deliveries, utc

TENANTS = {"default": TenantSettings("default"), "acme": TenantSettings("acme", timezone="Europe/Paris")}
COLUMNS = "tenant_id, call_id, source, encode(body_sha256, 'hex') AS sha, flags, deliveries, received_at, last_received_at"
ORDER = " FROM callstore.raw_events ORDER BY tenant_id, call_id, source, sha"
RAW = f"SELECT {COLUMNS}, payload::text AS payload" + ORDER
RAW_PACKED = f"SELECT {COLUMNS}, body" + ORDER


def as_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw events with their payload as a JSON value (from jsonb text, or from an unpacked body)."""
    out = []
    for r in rows:
        r = dict(r)
        r["payload"] = json.loads(unpack(r.pop("body")) if "body" in r else r["payload"])
        out.append(r)
    return out


async def test_upgrade_from_0013_keeps_every_raw_event(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url, pool_size=2)
    try:
        await migrate.upgrade(engine, "0013")
        async with engine.begin() as conn:
            await sync_tenants(conn, list(TENANTS.values()))
        # Two tenants, calls received from October to December, in batches as the webhook makes them.
        mix = (deliveries(ingest_0013.Delivery, "default", 300, seed=1, first=utc(2026, 10, 20), days=45)
               + deliveries(ingest_0013.Delivery, "acme", 150, seed=2, first=utc(2026, 11, 25), days=10))
        for i in range(0, len(mix), 97):
            async with engine.begin() as conn:
                await ingest_0013.ingest(conn, mix[i:i + 97], TENANTS)
        async with engine.connect() as conn:
            before = [dict(r._mapping) for r in await conn.execute(text(RAW))]
            first_seen = {(r[0], r[1]): r[2] for r in await conn.execute(text(
                "SELECT tenant_id, call_id, min(received_at) FROM callstore.raw_events GROUP BY 1, 2"))}
            calls_before = (await conn.execute(text(
                "SELECT md5(string_agg(to_jsonb(k)::text, '' ORDER BY tenant_id, call_id)) FROM callstore.calls k"))).scalar()
        assert len(before) > 1000 and sum(r["deliveries"] for r in before) > len(before)
        assert len({r["received_at"].month for r in before}) == 3

        await migrate.upgrade(engine)

        async with engine.connect() as conn:
            after = [dict(r._mapping) for r in await conn.execute(text(RAW_PACKED))]
            compressed = await conn.scalar(text("SELECT count(*) FROM callstore.raw_events WHERE get_byte(body, 0) = 1"))
            where = await conn.execute(text(
                "SELECT r.tenant_id, r.call_id, r.raw_month, k.raw_month AS call_month, r.tableoid::regclass::text AS part"
                " FROM callstore.raw_events r JOIN callstore.calls k USING (tenant_id, call_id)"))
            where = [dict(r._mapping) for r in where]
            calls_after = (await conn.execute(text(
                "SELECT md5(string_agg((to_jsonb(k) - 'raw_month')::text, '' ORDER BY tenant_id, call_id))"
                " FROM callstore.calls k"))).scalar()
        assert as_json(after) == as_json(before)  # every raw event, every column as it was
        assert compressed == len(before)  # the bodies are packed
        assert calls_after == calls_before
        assert len(where) == len(before)
        for w in where:
            month = first_seen[(w["tenant_id"], w["call_id"])]
            assert w["raw_month"] == w["call_month"] == date(month.year, month.month, 1)
            assert w["part"].endswith(w["raw_month"].strftime("_%Y%m")), w  # in its month's partition

        # The current write path finds the moved rows: a repeat is a duplicate, merged with no change.
        repeat = [Delivery(d.tenant_id, d.call_id, d.source, d.payload, datetime(2027, 1, 5, tzinfo=timezone.utc))
                  for d in mix[:50]]
        async with engine.begin() as conn:
            got = await ingest(conn, repeat, TENANTS)
        assert got.raw_inserted == 0 and got.changes == []
        async with engine.connect() as conn:
            total = await conn.scalar(text("SELECT sum(deliveries) FROM callstore.raw_events"))
        assert total == sum(r["deliveries"] for r in before) + 50

        # And back: the previous layout, with every raw event.
        await migrate.downgrade(engine, "0013")
        async with engine.connect() as conn:
            back = [dict(r._mapping) for r in await conn.execute(text(RAW))]
        assert len(back) == len(before)
        # (Deliveries counted since differ; every payload is the same JSON value.)
        assert [r["payload"] for r in as_json(back)] == [r["payload"] for r in as_json(before)]
    finally:
        await engine.dispose()




def test_downgrade_turns_each_body_into_what_jsonb_can_hold() -> None:
    spec = importlib.util.spec_from_file_location(
        "m0015", Path(__file__).parents[2] / "migrations" / "versions" / "0015_raw_partitions.py")
    assert spec is not None and spec.loader is not None
    m0015 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0015)
    as_jsonb = m0015._as_jsonb_text
    assert as_jsonb(b'{"a": "x", "b": [1, 2]}') == '{"a": "x", "b": [1, 2]}'  # as received
    assert json.loads(as_jsonb(b'{"a\\u0000": "x\\u0000y"}')) == {"a\ufffd": "x\ufffdy"}  # as 0014 stored it
    assert json.loads(as_jsonb(b"not json \x00")) == "not json \ufffd"  # kept, as a JSON string
