"""Bytes per call: every index of calls is needed by a query, and merges are HOT updates."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from store.ingest import Delivery, ingest
from store.settings import TenantSettings
from store.tables import calls

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TENANTS = {"default": TenantSettings("default")}
WHEN = datetime(2026, 11, 23, tzinfo=timezone.utc)


def documented_indexes() -> set[str]:
    """The indexes of calls listed, each with the query that needs it, in docs/operations.md."""
    section = DOCS.read_text().split("\n## Storage\n", 1)[1].split("\n## ", 1)[0]
    listing = section.split("**Indexes of `calls`.**", 1)[1]
    return set(re.findall(r"^\s+- `(calls_\w+)`", listing, flags=re.M))


async def test_every_index_of_calls_is_documented_with_the_query_that_needs_it(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        present = set((await conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'callstore' AND tablename = 'calls'"))).scalars())
    documented = documented_indexes()
    assert len(documented) >= 5, "the list of indexes in docs/operations.md was not found"
    assert present - documented == set(), "an index of calls no query is documented to need"
    assert documented - present == set(), "docs/operations.md lists an index calls does not have"


async def test_calls_keeps_room_on_its_pages_for_merges(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        options = await conn.scalar(text("SELECT reloptions FROM pg_class WHERE oid = 'callstore.calls'::regclass"))
    assert f"fillfactor={calls.dialect_options['postgresql']['with']['fillfactor']}" in (options or [])


def _event(call_id: str, **fields: str) -> dict[str, object]:
    base: dict[str, object] = {
        "call_id": call_id, "direction": "inbound", "caller_number": "0901234567", "destination_number": "801",
        "hotline": "19001001", "starttime": "2026-11-23 09:00:00", "answertime": "2026-11-23 09:00:05",
        "userName": "lan.nguyen", "objectId": 1, "eventType": "call", "call_status": "answered",
        "endtime": "", "hangup_by": "", "total_duration": "", "holding_duration": "", "recording_url": "",
    }
    base.update(fields)
    return base


async def test_merges_of_an_existing_call_are_hot_updates(engine) -> None:  # type: ignore[no-untyped-def]
    """The answered event, then the final one, then the history record: the two merges stay on the page."""
    async with engine.connect() as conn:
        version = int(await conn.scalar(text("SHOW server_version_num")))
    if version < 160000:
        pytest.skip("before PostgreSQL 16 the BRIN index on updated_at prevents HOT updates")
    final = {"call_status": "answered", "endtime": "2026-11-23 09:03:05", "hangup_by": "customer",
             "total_duration": "185", "holding_duration": "0", "recording_url": "https://media.example/r.mp3"}
    history = {**_event("H1", **final), "direction": "INBOUND", "agent": "lan.nguyen", "source": "ipcc"}
    del history["userName"]
    stats = text("SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                 " WHERE relid = 'callstore.calls'::regclass")
    async with engine.connect() as conn:
        # One transaction per delivery, as the webhook and the backfill commit
        # them (updated_at = now() differs), on one connection whose statistics
        # are flushed when it goes idle after each commit.
        await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        await conn.commit()
        before = (await conn.execute(stats)).one()
        await conn.commit()
        for delivery in (
            Delivery("default", "H1", "webhook", _event("H1"), WHEN),
            Delivery("default", "H1", "webhook", _event("H1", **final), WHEN),
            Delivery("default", "H1", "history", history, WHEN),
        ):
            await ingest(conn, [delivery], TENANTS)
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
            await conn.commit()
        after = (await conn.execute(stats)).one()
        row = (await conn.execute(text(
            "SELECT seen_history, hangup_by, total_seconds FROM callstore.calls WHERE call_id = 'H1'"))).one()
    ins, upd, hot = (a - b for a, b in zip(after, before))
    assert tuple(row) == (True, "customer", 185)  # both merges changed the row
    assert (ins, upd) == (1, 2)
    assert hot == upd, f"{upd - hot} of {upd} merges were not HOT updates"
