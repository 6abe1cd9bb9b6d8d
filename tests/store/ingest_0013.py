"""The write path as of migration 0013 (frozen copy of store/ingest.py before raw events were
partitioned): fills a database at revision 0013 the way the previous version did, for the
migration test. Not used by the service."""


from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.merge import FIELDS, Event, Source, fold, normalize
from store.settings import TenantSettings
from store.tenants import share_attribution


@dataclass(frozen=True)
class Delivery:
    """One received payload (a JSON object with a call_id)."""

    tenant_id: str
    call_id: str
    source: Source
    payload: Mapping[str, Any]
    received_at: datetime
    body_sha256: bytes = b""
    #: The JSON text as received (webhook); stored as is instead of re-encoding.
    body: bytes = b""


def canonical_payload(payload: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The payload's sorted-key JSON and its SHA-256, the identity of a payload
    for duplicate detection (key order does not matter). The JSON doubles as
    the stored body when none was received: jsonb keeps no key order."""
    text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return text, hashlib.sha256(text).digest()


@dataclass(frozen=True)
class CallChange:
    tenant_id: str
    call_id: str
    created: bool
    #: Fields whose value changed (all present fields for a new call);
    #: filled only when ingest() is asked to track changes.
    changed_fields: tuple[str, ...]


@dataclass
class IngestResult:
    deliveries: int = 0
    raw_inserted: int = 0
    duplicates: int = 0
    changes: list[CallChange] = field(default_factory=list)


# Rows travel as one JSON document (jsonb_to_recordset): far cheaper to build
# and send than one typed array per column.
_INSERT_RAW = text(
    """
    INSERT INTO callstore.raw_events
        (tenant_id, call_id, source, body_sha256, payload, flags, deliveries, received_at, last_received_at)
    SELECT u.t, u.c, u.s, decode(u.h, 'hex'), u.p, string_to_array(u.f, ','), u.d, u.r, u.r
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(t text, c text, s text, h text, p jsonb, f text, d int, r timestamptz)
    ON CONFLICT (tenant_id, call_id, source, body_sha256) DO UPDATE
        SET deliveries = callstore.raw_events.deliveries + excluded.deliveries,
            last_received_at = greatest(callstore.raw_events.last_received_at, excluded.last_received_at)
    RETURNING tenant_id, call_id, source, body_sha256, (xmax = 0) AS inserted
    """
)

_TYPES = {
    "started_at": "timestamptz", "answered_at": "timestamptz", "ended_at": "timestamptz",
    "total_seconds": "int", "hold_seconds": "int", "object_id": "int",
    "flagged": "boolean", "seen_webhook": "boolean", "seen_history": "boolean", "first_seen_at": "timestamptz",
}
_INPUT = ("tenant_id", "call_id", *FIELDS, "ranks", "flagged", "seen_webhook", "seen_history", "first_source", "first_seen_at")


def _beats(i: int, name: str) -> str:
    """SQL: the incoming value of field `name` (rank index i, 1-based) wins over the stored one."""
    collate = ' COLLATE "C"' if _TYPES.get(name, "text") == "text" else ""
    return (
        f"(coalesce(excluded.merge_ranks[{i}], -1), excluded.{name}{collate})"
        f" > (coalesce(k.merge_ranks[{i}], -1), k.{name}{collate})"
    )


def _merged(i: int, name: str) -> str:
    return f"CASE WHEN {_beats(i, name)} THEN excluded.{name} ELSE k.{name} END"


def _upsert_sql() -> str:
    fields = list(FIELDS)
    sets = [f"{name} = {_merged(i, name)}" for i, name in enumerate(fields, 1)]
    ranks = ", ".join(
        f"greatest(coalesce(excluded.merge_ranks[{i}], -1), coalesce(k.merge_ranks[{i}], -1))"
        for i in range(1, len(fields) + 1)
    )
    direction = _merged(fields.index("direction") + 1, "direction")
    hotline = _merged(fields.index("hotline") + 1, "hotline")
    changed = " OR ".join(
        [_beats(i, name) for i, name in enumerate(fields, 1)]
        + ["(excluded.flagged AND NOT k.flagged)", "(excluded.seen_webhook AND NOT k.seen_webhook)",
           "(excluded.seen_history AND NOT k.seen_history)", "excluded.first_seen_at < k.first_seen_at"]
    )
    columns = ", ".join(f"{c} {_TYPES.get(c, 'text')}" for c in _INPUT)
    return f"""
    INSERT INTO callstore.calls AS k
        (tenant_id, call_id, {", ".join(fields)}, merge_ranks, flagged, seen_webhook, seen_history,
         first_source, first_seen_at, queue_id)
    SELECT u.tenant_id, u.call_id, {", ".join("u." + f for f in fields)},
           CAST(string_to_array(u.ranks, ',') AS smallint[]), u.flagged, u.seen_webhook, u.seen_history,
           u.first_source, u.first_seen_at, callstore.attribute_queue(u.tenant_id, u.direction, u.hotline)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u({columns})
    ON CONFLICT (tenant_id, call_id) DO UPDATE SET
        {", ".join(sets)},
        merge_ranks = ARRAY[{ranks}]::smallint[],
        flagged = k.flagged OR excluded.flagged,
        seen_webhook = k.seen_webhook OR excluded.seen_webhook,
        seen_history = k.seen_history OR excluded.seen_history,
        first_source = CASE WHEN excluded.first_seen_at < k.first_seen_at THEN excluded.first_source
                            ELSE k.first_source END,
        first_seen_at = least(k.first_seen_at, excluded.first_seen_at),
        queue_id = callstore.attribute_queue(k.tenant_id, {direction}, {hotline}),
        updated_at = now()
    WHERE {changed}
    RETURNING k.tenant_id, k.call_id, (xmax = 0) AS created, {", ".join("k." + f for f in fields)}
    """


_UPSERT = text(_upsert_sql())

# `= ANY` on both key columns is an index scan on the primary key whatever
# the batch size; a join against unnest() was planned as a hash join that
# read the whole table on every batch. With several tenants in one batch it
# may also lock (tenant, call) pairs of other batches' keys: rows outside
# the batch are dropped below and the extra locks are harmless.
_LOCK_OLD = text(
    f"""
    SELECT k.tenant_id, k.call_id, {", ".join("k." + f for f in FIELDS)}
    FROM callstore.calls k
    WHERE k.tenant_id = ANY(CAST(:t AS text[])) AND k.call_id = ANY(CAST(:c AS text[]))
    ORDER BY k.tenant_id, k.call_id
    FOR UPDATE OF k
    """
)


async def ingest(
    conn: AsyncConnection,
    deliveries: Sequence[Delivery],
    tenants: Mapping[str, TenantSettings],
    *,
    track_changes: bool = False,
) -> IngestResult:
    """Store `deliveries` and merge their calls, inside the caller's transaction.

    With `track_changes`, the result lists every call created or changed and
    which fields changed (the backfill's reconciliation ledger needs that);
    without, only how many rows were written (the webhook does not).
    """
    result = IngestResult(deliveries=len(deliveries))
    if not deliveries:
        return result

    # One row per distinct payload; repeats within the batch count deliveries.
    unique: dict[tuple[str, str, str, bytes], _Unique] = {}
    for d in deliveries:
        # The same payload from the webhook and from the history API is two
        # deliveries: the source is part of what a value is worth (its rank).
        canonical, digest = (b"", d.body_sha256) if d.body_sha256 else canonical_payload(d.payload)
        key = (d.tenant_id, d.call_id, d.source, digest)
        u = unique.get(key)
        if u is None:
            tenant = tenants[d.tenant_id]
            payload, body = d.payload, d.body or canonical or orjson.dumps(d.payload)
            nul = b"\\u0000" in body
            if nul:  # Postgres text and jsonb cannot hold U+0000
                payload = _without_nul(payload)
                body = orjson.dumps(payload)
            ev = normalize(payload, d.source, tenant.zone, tenant.country_code)
            if nul:
                ev = Event(ev.source, ev.values, (*ev.flags, "nul_character"))
            unique[key] = _Unique(d, orjson.Fragment(body), ev)
        else:
            u.count += 1
            if d.received_at < u.delivery.received_at:
                u.delivery = d

    rows = sorted(unique.items(), key=lambda kv: kv[0])
    raw_rows = [
        {"t": k[0], "c": k[1], "s": k[2], "h": k[3].hex(), "p": u.body,
         "f": ",".join(u.event.flags), "d": u.count, "r": u.delivery.received_at}
        for k, u in rows
    ]
    inserted = await conn.execute(_INSERT_RAW, {"rows": orjson.dumps(raw_rows).decode()})
    fresh: dict[tuple[str, str], list[_Unique]] = defaultdict(list)
    for tenant_id, call_id, source, digest, was_inserted in inserted:
        if was_inserted:
            fresh[(tenant_id, call_id)].append(unique[(tenant_id, call_id, source, digest)])
    result.raw_inserted = sum(len(v) for v in fresh.values())
    result.duplicates = len(deliveries) - result.raw_inserted
    if not fresh:
        return result

    order = sorted(fresh)
    # The queue of each call is computed below from the catalogue: hold it
    # still until we commit (store/tenants.py says why).
    await share_attribution(conn, [t for t, _ in order])
    old: dict[tuple[str, str], tuple[Any, ...]] = {}
    if track_changes:
        keys = {"t": sorted({t for t, _ in order}), "c": [c for _, c in order]}
        old = {(r[0], r[1]): tuple(r[2:]) for r in await conn.execute(_LOCK_OLD, keys) if (r[0], r[1]) in fresh}

    call_rows: list[dict[str, Any]] = []
    for key in order:
        items = fresh[key]
        if len(items) == 1:
            folded = fold([items[0].event])
            first = items[0].delivery
        else:
            folded = fold([u.event for u in items])
            first = min(items, key=lambda u: u.delivery.received_at).delivery
        row = folded.values  # a fresh dict, filled in place
        ranks = folded.ranks
        row.update(
            tenant_id=key[0], call_id=key[1],
            ranks=",".join([str(ranks.get(name, -1)) for name in FIELDS]),
            flagged=folded.flagged, seen_webhook="webhook" in folded.sources,
            seen_history="history" in folded.sources, first_source=first.source, first_seen_at=first.received_at,
        )
        call_rows.append(row)

    for row in await conn.execute(_UPSERT, {"rows": orjson.dumps(call_rows).decode()}):
        key = (row[0], row[1])
        created = bool(row[2])
        if not track_changes:
            result.changes.append(CallChange(key[0], key[1], created, ()))
            continue
        new = row[3:]
        before = old.get(key)
        if before is None:
            changed = tuple([n for n, v in zip(FIELDS, new) if v is not None])
        else:
            changed = tuple([n for n, a, b in zip(FIELDS, before, new) if a != b])
        result.changes.append(CallChange(key[0], key[1], created, changed))
    return result


@dataclass
class _Unique:
    delivery: Delivery
    body: orjson.Fragment
    event: Event
    count: int = 1


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value
