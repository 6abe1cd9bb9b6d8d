"""The one write path for call data: raw deliveries in, merged call rows out.

The webhook (micro-batched), the spool drainer and the backfill all call
`ingest()`. In the caller's transaction it

1. takes a transaction-level advisory lock per call, in key order (so
   concurrent writers, on any replica, serialise per call and never deadlock),
2. appends the raw deliveries; an identical payload already stored only
   counts one more delivery,
3. re-folds every call that got a new delivery from all its raw events
   (store/merge.py) and upserts the row if, and only if, it changed.

It never commits: the caller owns the transaction.
"""

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

from store.merge import FIELDS, Event, Folded, Source, fold, normalize
from store.settings import TenantSettings


@dataclass(frozen=True)
class Delivery:
    """One received payload (a JSON object with a call_id)."""

    tenant_id: str
    call_id: str
    source: Source
    payload: Mapping[str, Any]
    received_at: datetime
    body_sha256: bytes = b""

    def digest(self) -> bytes:
        return self.body_sha256 or payload_digest(self.payload)


def payload_digest(payload: Mapping[str, Any]) -> bytes:
    """Identity of a payload for duplicate detection: key order does not matter."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).digest()


@dataclass(frozen=True)
class CallChange:
    tenant_id: str
    call_id: str
    created: bool
    changed_fields: tuple[str, ...]


@dataclass
class IngestResult:
    deliveries: int = 0
    raw_inserted: int = 0
    duplicates: int = 0
    changes: list[CallChange] = field(default_factory=list)


def lock_key(tenant_id: str, call_id: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}\x00{call_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_LOCK = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) s"
)

_INSERT_RAW = text(
    """
    INSERT INTO callstore.raw_events
        (tenant_id, call_id, source, body_sha256, payload, flags, deliveries, received_at, last_received_at)
    SELECT u.t, u.c, u.s, u.h, CAST(u.p AS jsonb), string_to_array(u.f, ','), u.d, u.r, u.r
    FROM unnest(CAST(:t AS text[]), CAST(:c AS text[]), CAST(:s AS text[]), CAST(:h AS bytea[]),
                CAST(:p AS text[]), CAST(:f AS text[]), CAST(:d AS int[]), CAST(:r AS timestamptz[]))
         AS u(t, c, s, h, p, f, d, r)
    ON CONFLICT (tenant_id, call_id, body_sha256) DO UPDATE
        SET deliveries = callstore.raw_events.deliveries + excluded.deliveries,
            last_received_at = greatest(callstore.raw_events.last_received_at, excluded.last_received_at)
    RETURNING tenant_id, call_id, (xmax = 0) AS inserted
    """
)

_RAW_OF_CALLS = text(
    """
    SELECT r.tenant_id, r.call_id, r.source, r.body_sha256, r.flags, CAST(r.payload AS text) AS payload
    FROM callstore.raw_events r
    JOIN unnest(CAST(:t AS text[]), CAST(:c AS text[])) AS u(t, c) ON r.tenant_id = u.t AND r.call_id = u.c
    """
)

_COLUMNS = (*FIELDS, "flagged", "seen_webhook", "seen_history")
_OLD_CALLS = text(
    f"""
    SELECT k.tenant_id, k.call_id, {", ".join("k." + c for c in _COLUMNS)}
    FROM callstore.calls k
    JOIN unnest(CAST(:t AS text[]), CAST(:c AS text[])) AS u(t, c) ON k.tenant_id = u.t AND k.call_id = u.c
    """
)

_SQL_TYPES = {
    "started_at": "timestamptz",
    "answered_at": "timestamptz",
    "ended_at": "timestamptz",
    "total_seconds": "int",
    "hold_seconds": "int",
    "object_id": "int",
    "flagged": "boolean",
    "seen_webhook": "boolean",
    "seen_history": "boolean",
    "first_seen_at": "timestamptz",
}
_UPSERT_COLUMNS = ("tenant_id", "call_id", *_COLUMNS, "first_source", "first_seen_at")
_UPSERT = text(
    f"""
    INSERT INTO callstore.calls ({", ".join(_UPSERT_COLUMNS)}, queue_id)
    SELECT u.*, callstore.attribute_queue(u.tenant_id, u.direction, u.hotline)
    FROM unnest({", ".join(f"CAST(:{c} AS {_SQL_TYPES.get(c, 'text')}[])" for c in _UPSERT_COLUMNS)})
         AS u({", ".join(_UPSERT_COLUMNS)})
    ON CONFLICT (tenant_id, call_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _COLUMNS)},
        queue_id = excluded.queue_id,
        updated_at = now()
    """
)


async def ingest(
    conn: AsyncConnection, deliveries: Sequence[Delivery], tenants: Mapping[str, TenantSettings]
) -> IngestResult:
    """Store `deliveries` and merge their calls, inside the caller's transaction."""
    result = IngestResult(deliveries=len(deliveries))
    if not deliveries:
        return result

    # One row per distinct payload; repeats within the batch count deliveries.
    unique: dict[tuple[str, str, bytes], _Unique] = {}
    for d in deliveries:
        key = (d.tenant_id, d.call_id, d.digest())
        u = unique.get(key)
        if u is None:
            tenant = tenants[d.tenant_id]
            payload, body = d.payload, orjson.dumps(d.payload)
            nul = b"\\u0000" in body
            if nul:  # Postgres text and jsonb cannot hold U+0000
                payload = _without_nul(payload)
                body = orjson.dumps(payload)
            ev = normalize(payload, d.source, tenant.zone, tenant.country_code)
            flags = (*ev.flags, "nul_character") if nul else ev.flags
            unique[key] = _Unique(d, body.decode(), ev, flags)
        else:
            u.count += 1
            if d.received_at < u.delivery.received_at:
                u.delivery = d

    keys = sorted({lock_key(t, c) for t, c, _ in unique})
    await conn.execute(_LOCK, {"keys": keys})

    rows = list(unique.items())
    inserted = await conn.execute(
        _INSERT_RAW,
        {
            "t": [k[0] for k, _ in rows],
            "c": [k[1] for k, _ in rows],
            "s": [u.delivery.source for _, u in rows],
            "h": [k[2] for k, _ in rows],
            "p": [u.body for _, u in rows],
            "f": [",".join(u.flags) for _, u in rows],
            "d": [u.count for _, u in rows],
            "r": [u.delivery.received_at for _, u in rows],
        },
    )
    touched: set[tuple[str, str]] = set()
    for tenant_id, call_id, was_inserted in inserted:
        if was_inserted:
            result.raw_inserted += 1
            touched.add((tenant_id, call_id))
    result.duplicates = len(deliveries) - result.raw_inserted
    if not touched:
        return result

    first: dict[tuple[str, str], Delivery] = {}
    for d in deliveries:
        k = (d.tenant_id, d.call_id)
        if k in touched and (k not in first or d.received_at < first[k].received_at):
            first[k] = d

    order = sorted(touched)
    params = {"t": [t for t, _ in order], "c": [c for _, c in order]}
    events: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for tenant_id, call_id, source, digest, flags, payload in await conn.execute(_RAW_OF_CALLS, params):
        known = unique.get((tenant_id, call_id, digest))
        if known is not None:
            ev = known.event
        else:
            tenant = tenants[tenant_id]
            ev = normalize(orjson.loads(payload), source, tenant.zone, tenant.country_code)
        # The flags stored with the raw event are the record of what was wrong.
        events[(tenant_id, call_id)].append(Event(ev.source, ev.values, tuple(flags)))
    old = {(r[0], r[1]): dict(zip(_COLUMNS, r[2:])) for r in await conn.execute(_OLD_CALLS, params)}

    upsert: dict[str, list[Any]] = {c: [] for c in _UPSERT_COLUMNS}
    for key in order:
        merged = _row(fold(events[key]))
        before = old.get(key)
        if before is not None:
            changed = tuple(c for c in _COLUMNS if before[c] != merged[c])
            if not changed:
                continue
        else:
            changed = tuple(c for c in FIELDS if merged[c] is not None)
        result.changes.append(CallChange(key[0], key[1], before is None, changed))
        upsert["tenant_id"].append(key[0])
        upsert["call_id"].append(key[1])
        for c in _COLUMNS:
            upsert[c].append(merged[c])
        upsert["first_source"].append(first[key].source)
        upsert["first_seen_at"].append(first[key].received_at)
    if upsert["call_id"]:
        await conn.execute(_UPSERT, upsert)
    return result


def _row(folded: Folded) -> dict[str, Any]:
    row = dict(folded.values)
    row["flagged"] = folded.flagged
    row["seen_webhook"] = "webhook" in folded.sources
    row["seen_history"] = "history" in folded.sources
    return row


@dataclass
class _Unique:
    delivery: Delivery
    body: str
    event: Event
    flags: tuple[str, ...]
    count: int = 1


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value
