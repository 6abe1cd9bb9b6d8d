"""Raw events partitioned per tenant and month: exact deduplication, partitions ahead,
inserts never refused, retention by dropping partitions, and what it leaves alone."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store import raw_partitions
from store.calls_query import call_events
from store.raw_body import unpack
from store.ingest import Delivery, ingest
from store.settings import Settings, TenantSettings
from store.tenants import sync_tenants
from tests.conftest import test_settings
from tests.store.raw_mix import utc

TENANTS = {"default": TenantSettings("default"), "acme": TenantSettings("acme", timezone="Europe/Paris")}
FINAL = {"call_id": "C1", "call_status": "answered", "direction": "inbound", "caller_number": "0912345678",
         "hotline": "1900", "starttime": "2026-11-30 23:58:00", "answertime": "2026-11-30 23:58:10",
         "endtime": "2026-11-30 23:59:30", "total_duration": "90", "holding_duration": "3"}
CALL_ROW = "SELECT k.*, k.xmin::text AS version FROM callstore.calls k WHERE k.tenant_id = :t AND k.call_id = :c"


def settings_with(*tenants: TenantSettings) -> Settings:
    return replace(test_settings(), tenants=tenants)


async def deliver(engine: AsyncEngine, *deliveries: Delivery) -> Any:
    async with engine.begin() as conn:
        return await ingest(conn, list(deliveries), TENANTS, track_changes=True)


async def raw_rows(engine: AsyncEngine, call_id: str, tenant: str = "default") -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT tableoid::regclass::text AS part, raw_month, source, deliveries, received_at, last_received_at"
            " FROM callstore.raw_events WHERE tenant_id = :t AND call_id = :c ORDER BY received_at"),
            {"t": tenant, "c": call_id})
        return [dict(r._mapping) for r in rows]


async def call_row(engine: AsyncEngine, call_id: str, tenant: str = "default") -> dict[str, Any]:
    async with engine.connect() as conn:
        return dict((await conn.execute(text(CALL_ROW), {"t": tenant, "c": call_id})).one()._mapping)


async def partitions(engine: AsyncEngine) -> dict[str, str]:
    """Every partition of raw events (name: bound), leaves and tenant tables."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
            " WHERE c.relnamespace = 'callstore_raw'::regnamespace AND c.relkind IN ('r', 'p')"))
        return {r[0]: r[1] for r in rows}


async def tenant_table(engine: AsyncEngine, tenant: str) -> str:
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT callstore.raw_tenant_table(:t)"), {"t": tenant})


async def test_a_duplicate_across_a_month_boundary_counts_on_one_row_and_merges_once(engine: AsyncEngine) -> None:
    await raw_partitions.maintain(engine, settings_with(TENANTS["default"]), utc(2026, 11, 20))
    first = await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 30, 23, 59, 50)))
    before = await call_row(engine, "C1")
    again = await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 12, 1, 0, 0, 20)))
    [row] = await raw_rows(engine, "C1")
    t = await tenant_table(engine, "default")
    assert row["part"] == f"callstore_raw.{t}_202611" and row["raw_month"] == date(2026, 11, 1)
    assert row["deliveries"] == 2 and row["last_received_at"] == utc(2026, 12, 1, 0, 0, 20)
    assert (first.raw_inserted, again.raw_inserted, again.duplicates) == (1, 0, 1)
    assert again.changes == []
    assert await call_row(engine, "C1") == before  # not written again
    # A new event of the call in December joins its November partition.
    later = {**FINAL, "recording_url": "http://media/r.mp3"}
    await deliver(engine, Delivery("default", "C1", "history", later, utc(2026, 12, 2)))
    assert [r["part"] for r in await raw_rows(engine, "C1")] == [f"callstore_raw.{t}_202611"] * 2


async def test_concurrent_writers_of_a_new_call_store_one_row_and_merge_once(engine: AsyncEngine) -> None:
    # The second writer receives it a minute later, in the next month: it must still join the first's row.
    one = Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 30, 23, 59, 30))
    two = Delivery("default", "C1", "webhook", FINAL, utc(2026, 12, 1, 0, 0, 30))
    async with engine.connect() as a, engine.connect() as b:
        ta, tb = await a.begin(), await b.begin()
        xid_a = await a.scalar(text("SELECT txid_current()::text"))
        xid_b = await b.scalar(text("SELECT txid_current()::text"))
        got_a = await ingest(a, [one], TENANTS)
        second = asyncio.create_task(ingest(b, [two], TENANTS))
        await asyncio.sleep(0.5)
        assert not second.done()  # waits for the first writer's call row
        await ta.commit()
        got_b = await asyncio.wait_for(second, 10)
        await tb.commit()
    [row] = await raw_rows(engine, "C1")
    assert row["deliveries"] == 2 and row["raw_month"] == date(2026, 11, 1)
    assert (got_a.raw_inserted, got_b.raw_inserted, got_b.duplicates) == (1, 0, 1)
    assert [c.created for c in got_a.changes] == [True] and got_b.changes == []
    call = await call_row(engine, "C1")
    assert call["version"] == xid_a != xid_b  # only the first writer wrote the call
    assert call["first_seen_at"] == one.received_at


async def test_partitions_are_created_ahead_for_every_tenant(engine: AsyncEngine) -> None:
    settings = settings_with(TENANTS["default"], TENANTS["acme"])
    done = await raw_partitions.maintain(engine, settings, utc(2026, 12, 15))
    parts = await partitions(engine)
    for tenant in ("default", "acme"):
        t = await tenant_table(engine, tenant)
        assert parts[t] == f"FOR VALUES IN ('{tenant}')"
        assert parts[f"{t}_default"] == "DEFAULT"
        for month, bound in (("202612", "2026-12-01') TO ('2027-01-01"), ("202701", "2027-01-01') TO ('2027-02-01"),
                             ("202702", "2027-02-01') TO ('2027-03-01")):
            assert parts[f"{t}_{month}"] == f"FOR VALUES FROM ('{bound}')"
    # Names never carry the tenant id.
    assert all(re.fullmatch(r"raw_events_default|t_[0-9a-f]{16}(_default|_[0-9]{6})?", name) for name in parts)
    assert len(done.months_created) == 6
    again = await raw_partitions.maintain(engine, settings, utc(2026, 12, 16))
    assert again.months_created == [] and again.tenants_created == []
    # A month later, one more month.
    later = await raw_partitions.maintain(engine, settings, utc(2027, 1, 2))
    assert sorted(m for _, m in later.months_created) == [date(2027, 3, 1)] * 2


async def test_body_is_stored_packed_and_not_compressed_again(engine: AsyncEngine) -> None:
    await raw_partitions.maintain(engine, settings_with(TENANTS["default"]), utc(2026, 11, 20))
    body = orjson.dumps(FINAL)
    big = {**FINAL, "call_id": "C2", "note": "x" * 3000}
    await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 21), b"h" * 32, body),
                  Delivery("default", "C2", "webhook", big, utc(2026, 11, 21)))
    async with engine.connect() as conn:
        rows = {r[0]: r[1:] for r in await conn.execute(text(
            "SELECT call_id, body, pg_column_compression(body), pg_column_size(body) FROM callstore.raw_events"))}
        storage = {r[0] for r in await conn.execute(text(
            "SELECT a.attstorage FROM pg_partition_tree('callstore.raw_events') t"
            " JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'body' WHERE t.isleaf"))}
    assert storage == {b"e"}  # EXTERNAL: PostgreSQL does not try to compress it again
    stored, method, size = rows["C1"]
    assert unpack(stored) == body and method is None and size < len(body) * 0.6
    stored, method, size = rows["C2"]
    assert orjson.loads(unpack(stored)) == big and method is None and size < 200


async def test_an_insert_is_never_refused_and_waiting_rows_move_to_their_partition(engine: AsyncEngine) -> None:
    # No partition was ever created for these tenants: their rows wait in DEFAULT partitions.
    old = Delivery("default", "C0", "webhook", {**FINAL, "call_id": "C0"}, utc(2026, 9, 3))
    new = Delivery("acme", "C1", "webhook", FINAL, utc(2026, 11, 30, 23, 59))
    await deliver(engine, old, new)
    assert (await raw_rows(engine, "C0"))[0]["part"] == "callstore_raw.raw_events_default"
    settings = settings_with(TENANTS["default"])  # acme is not configured any more
    await raw_partitions.maintain(engine, settings, utc(2026, 12, 1))
    d, a = await tenant_table(engine, "default"), await tenant_table(engine, "acme")
    assert (await raw_rows(engine, "C0"))[0]["part"] == f"callstore_raw.{d}_202609"
    assert (await raw_rows(engine, "C1", "acme"))[0]["part"] == f"callstore_raw.{a}_202611"
    # A month with no partition yet: the tenant's DEFAULT partition takes it, the next run moves it.
    far = Delivery("default", "C9", "webhook", {**FINAL, "call_id": "C9"}, utc(2027, 6, 1))
    await deliver(engine, far)
    assert (await raw_rows(engine, "C9"))[0]["part"] == f"callstore_raw.{d}_default"
    await deliver(engine, far)  # deduplicated there too
    await raw_partitions.maintain(engine, settings, utc(2026, 12, 2))
    [row] = await raw_rows(engine, "C9")
    assert row["part"] == f"callstore_raw.{d}_202706" and row["deliveries"] == 2
    await deliver(engine, new)  # still exact after the move
    assert [r["deliveries"] for r in await raw_rows(engine, "C1", "acme")] == [2]
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore_raw.raw_events_default")) == 0


async def _everything_but_raw_events(engine: AsyncEngine) -> dict[str, list[str]]:
    async with engine.connect() as conn:
        tables = (await conn.execute(text(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'callstore'::regnamespace"
            " AND c.relkind IN ('r', 'p') AND c.relname NOT IN ('raw_events', 'locks', 'alembic_version')"
            " ORDER BY 1"))).scalars().all()
        out = {}
        for name in tables:
            drop = " - 'raw_floor' - 'updated_at'" if name == "tenants" else ""
            rows = await conn.execute(text(f'SELECT (to_jsonb(t){drop})::text FROM callstore."{name}" t ORDER BY 1'))
            out[name] = list(rows.scalars())
        out["calls_versions"] = list((await conn.execute(
            text("SELECT xmin::text FROM callstore.calls ORDER BY tenant_id, call_id"))).scalars())
    return out


async def test_retention_drops_only_that_tenants_old_months_and_nothing_else(engine: AsyncEngine) -> None:
    from tests.security.bi import fill_every_table

    base = test_settings()
    await fill_every_table(engine, base)  # calls, rollups, ledger, recordings, alerts... of both tenants
    for tenant in ("default", "acme"):
        for month in (8, 9, 10, 11):
            await deliver(engine, Delivery(tenant, f"R{month}", "webhook", {**FINAL, "call_id": f"R{month}"},
                                           utc(2026, month, 20)))
    keep_acme = replace(base.tenants[1], raw_events_retention_days=None)
    settings = replace(base, tenants=(replace(base.tenants[0], raw_events_retention_days=60), keep_acme))
    await raw_partitions.maintain(engine, settings, utc(2026, 10, 25))
    from reports.rollups import refresh_rollups  # everything derived is up to date before the snapshot
    async with engine.begin() as conn:
        await refresh_rollups(conn)
    before = await _everything_but_raw_events(engine)
    parts_before = await partitions(engine)

    # 60 days before Dec 5 is Oct 6: August and September are wholly older, October is not.
    done = await raw_partitions.maintain(engine, settings, utc(2026, 12, 5))
    assert done.dropped == {"default": [date(2026, 8, 1), date(2026, 9, 1)]}
    d, a = await tenant_table(engine, "default"), await tenant_table(engine, "acme")
    assert set(parts_before) - set(await partitions(engine)) == {f"{d}_202608", f"{d}_202609"}
    for month in (8, 9):
        assert await raw_rows(engine, f"R{month}") == []
        assert len(await raw_rows(engine, f"R{month}", "acme")) == 1
    assert len(await raw_rows(engine, "R10")) == 1
    assert await _everything_but_raw_events(engine) == before
    async with engine.connect() as conn:
        floors = dict((await conn.execute(text("SELECT tenant_id, raw_floor FROM callstore.tenants"))).all())
    assert floors == {"default": date(2026, 10, 1), "acme": None}
    # Nothing more to drop the next day.
    assert (await raw_partitions.maintain(engine, settings, utc(2026, 12, 6))).dropped == {"default": []}


async def test_a_duplicate_after_retention_does_not_change_the_call(engine: AsyncEngine) -> None:
    settings = settings_with(replace(TENANTS["default"], raw_events_retention_days=30))
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    partial = {**FINAL, "endtime": "", "call_status": "answered"}
    await deliver(engine, Delivery("default", "C1", "webhook", partial, utc(2026, 9, 10)),
                  Delivery("default", "C1", "webhook", FINAL, utc(2026, 9, 10, 0, 2)))
    await raw_partitions.maintain(engine, settings, utc(2026, 9, 11))
    before = await call_row(engine, "C1")
    await raw_partitions.maintain(engine, settings, utc(2026, 11, 15))  # September dropped
    assert await raw_rows(engine, "C1") == []
    # Alohub delivers both again, in any order: stored in the oldest kept month, merged, unchanged.
    got = await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 16)),
                        Delivery("default", "C1", "webhook", partial, utc(2026, 11, 16, 0, 1)))
    assert got.raw_inserted == 2 and got.changes == []
    assert await call_row(engine, "C1") == before
    t = await tenant_table(engine, "default")
    assert [r["part"] for r in await raw_rows(engine, "C1")] == [f"callstore_raw.{t}_202610"] * 2
    # And again: now an ordinary duplicate of the copy kept.
    await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 17)))
    assert sorted(r["deliveries"] for r in await raw_rows(engine, "C1")) == [1, 2]
    assert await call_row(engine, "C1") == before


async def test_the_call_detail_reads_the_events_kept(engine: AsyncEngine) -> None:
    from store.calls_query import call_events

    await deliver(engine, Delivery("default", "C1", "webhook", FINAL, utc(2026, 11, 30, 23, 59)),
                  Delivery("default", "C1", "history", FINAL, utc(2026, 12, 1, 9)))
    await deliver(engine, Delivery("acme", "C1", "webhook", FINAL, utc(2026, 12, 1, 9)))
    async with engine.connect() as conn:
        events = await call_events(conn, "default", "C1")
    assert [(e["source"], e["deliveries"]) for e in events] == [("webhook", 1), ("history", 1)]
    assert "id" not in events[0]


@pytest.mark.parametrize("value", ["0", "-3", "two", "36501", "1.5"])
def test_retention_setting_is_checked(value: str) -> None:
    from store.errors import ConfigError
    from store.settings import parse_settings

    assert parse_settings({}).tenants[0].raw_events_retention_days is None  # kept forever
    assert parse_settings({"CALLSTORE_RAW_EVENTS_RETENTION_DAYS": "400"}).tenants[0].raw_events_retention_days == 400
    with pytest.raises(ConfigError) as err:
        parse_settings({"CALLSTORE_RAW_EVENTS_RETENTION_DAYS": value})
    assert str(err.value).startswith("CALLSTORE_RAW_EVENTS_RETENTION_DAYS")


def test_retention_per_tenant_in_a_tenants_file(tmp_path: Any) -> None:
    from store.errors import ConfigError
    from store.settings import parse_settings

    f = tmp_path / "tenants.toml"
    f.write_text('[tenants.a]\nwebhook_keys = ["a-key-0000000000001"]\nraw_events_retention_days = 90\n'
                 '[tenants.b]\nwebhook_keys = ["b-key-0000000000001"]\n')
    s = parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})
    assert [t.raw_events_retention_days for t in s.tenants] == [90, None]
    f.write_text('[tenants.a]\nwebhook_keys = ["a-key-0000000000001"]\nraw_events_retention_days = "soon"\n')
    with pytest.raises(ConfigError, match=r"\[tenants\.a\] raw_events_retention_days"):
        parse_settings({"CALLSTORE_TENANTS_FILE": str(f)})


def test_the_job_is_scheduled() -> None:
    from callstore.composition import build_jobs

    job = next(j for j in build_jobs(test_settings()) if j.name == "raw-partitions")
    assert job.run is raw_partitions.run_job and job.disabled_reason is None


async def test_call_detail_shows_each_body_as_json_or_else_as_text(engine: AsyncEngine) -> None:
    sent = b'{"call_id": "C1", "call_status": "answered", "userName": "a\\u0000b"}'
    await deliver(engine, Delivery("default", "C1", "webhook", orjson.loads(sent), utc(2026, 11, 21), b"h" * 32, sent))
    async with engine.connect() as conn:
        [event] = await call_events(conn, "default", "C1")
        assert event["payload"] == {"call_id": "C1", "call_status": "answered", "userName": "a\x00b"}
        assert "body" not in event and "nul_character" in event["flags"]
        # Not JSON (the webhook never stores such a body, an older or hand-made row could).
        await conn.execute(text("UPDATE callstore.raw_events SET body = '\\x00'::bytea || convert_to('not json', 'UTF8')"))
        [event] = await call_events(conn, "default", "C1")
        assert event["payload"] == "not json"
        assert await call_events(conn, "acme", "C1") == []  # another tenant's call: nothing
