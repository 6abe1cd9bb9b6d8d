"""The one write path for call data: raw deliveries in, merged call rows out.

The webhook (micro-batched), the spool drainer and the backfill all call
`ingest()`. In the caller's transaction, with a fixed number of statements
whatever the batch size, it

1. folds the batch's events per call (store/merge.py) and merges each folded
   call into its stored row by the same rule, in SQL: per field, the value of
   higher (rank, value) wins. The stored row keeps the rank of each field
   (`merge_ranks`), so merging is associative, commutative and idempotent:
   any batching, order or duplication of events gives the same row, and
   merging an event already merged writes nothing. The same statement gives
   each call's `raw_month`, the partition of its raw events (set when the
   row is created, never changed; raised to the tenant's oldest kept month
   when retention dropped it);
2. appends the raw deliveries into that month, each body exactly as received
   (or the payload's sorted-key JSON when no body came with it), packed by
   store/raw_body.py; an identical payload already stored there only counts
   one more delivery.

Merging before storing the raw rows is what lets a new call's month be known
before its raw rows are written without an extra row version: the upsert
creates the row (and its month) or locks it, so two writers of one new call
agree on its month, and the second one's raw insert finds the first one's
rows (one row, deliveries 2).

Concurrent writers need no extra locks: ON CONFLICT DO UPDATE locks the row
and merges against its latest committed version. Rows are written in key
order so that two writers never deadlock. A row is rewritten only when a
field's value or rank changes. It never commits: the caller owns the
transaction.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store import raw_body
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
        (tenant_id, raw_month, call_id, source, body_sha256, body, flags, deliveries, received_at,
         last_received_at)
    SELECT u.t, u.m, u.c, u.s, decode(u.h, 'hex'), decode(u.b, 'base64'), string_to_array(u.f, ','), u.d, u.r, u.r
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(t text, m date, c text, s text, h text, b text, f text, d int, r timestamptz)
    ON CONFLICT (tenant_id, call_id, source, body_sha256, raw_month) DO UPDATE
        SET deliveries = callstore.raw_events.deliveries + excluded.deliveries,
            last_received_at = greatest(callstore.raw_events.last_received_at, excluded.last_received_at)
    -- (xmax = 0 cannot be read from a partitioned table: a row inserted here has exactly the
    -- deliveries sent, an updated one more.)
    RETURNING tenant_id, call_id, source, body_sha256, deliveries
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
    fields_k = ", ".join("k." + f for f in fields)
    # The rows written (created or changed), then every stored row as this
    # statement's snapshot shows it: every call's raw_month. A row committed
    # by another writer after the snapshot was taken (its lock waited for)
    # is missing here; ingest() reads it once more. One primary-key lookup
    # per call (LATERAL; LIMIT 1 keeps it from being flattened into a hash
    # join): `= ANY` on both columns was planned as a scan of the tenant's
    # every call.
    return f"""
    WITH up AS (
    INSERT INTO callstore.calls AS k
        (tenant_id, call_id, {", ".join(fields)}, merge_ranks, flagged, seen_webhook, seen_history,
         first_source, first_seen_at, queue_id, raw_month)
    SELECT u.tenant_id, u.call_id, {", ".join("u." + f for f in fields)},
           CAST(string_to_array(u.ranks, ',') AS smallint[]), u.flagged, u.seen_webhook, u.seen_history,
           u.first_source, u.first_seen_at, callstore.attribute_queue(u.tenant_id, u.direction, u.hotline),
           greatest(date_trunc('month', u.first_seen_at AT TIME ZONE 'UTC')::date,
                    (SELECT f.raw_floor FROM callstore.tenants f WHERE f.tenant_id = u.tenant_id))
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
    RETURNING k.tenant_id, k.call_id, (xmax = 0) AS created, true AS written, k.raw_month, {fields_k}
    ), x AS (
    SELECT * FROM up
    UNION ALL
    SELECT k.tenant_id, k.call_id, false, false, k.raw_month, {fields_k}
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS w(tenant_id text, call_id text)
    CROSS JOIN LATERAL (SELECT * FROM callstore.calls k
                        WHERE k.tenant_id = w.tenant_id AND k.call_id = w.call_id LIMIT 1) k
    )
    SELECT x.tenant_id, x.call_id, x.created, x.written,
           greatest(x.raw_month, (SELECT f.raw_floor FROM callstore.tenants f WHERE f.tenant_id = x.tenant_id)),
           {", ".join("x." + f for f in fields)}
    FROM x
    """


_UPSERT = text(_upsert_sql())

_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")

_MONTHS = text(
    """
    SELECT k.tenant_id, k.call_id,
           greatest(k.raw_month, (SELECT f.raw_floor FROM callstore.tenants f WHERE f.tenant_id = k.tenant_id))
    FROM unnest(CAST(:t AS text[]), CAST(:c AS text[])) AS w(t, c)
    CROSS JOIN LATERAL (SELECT * FROM callstore.calls k WHERE k.tenant_id = w.t AND k.call_id = w.c LIMIT 1) k
    """
)

# One primary-key lookup per call (LIMIT 1 keeps the LATERAL from being
# flattened into a hash join), locked in key order (the pairs are sorted). `= ANY` on both key columns was planned, on a large table, as a
# scan of every call of the batch's tenants (an index on tenant_id first).
_LOCK_OLD = text(
    f"""
    SELECT k.tenant_id, k.call_id, {", ".join("k." + f for f in FIELDS)}
    FROM unnest(CAST(:t AS text[]), CAST(:c AS text[])) AS w(t, c)
    CROSS JOIN LATERAL (SELECT * FROM callstore.calls k WHERE k.tenant_id = w.t AND k.call_id = w.c
                        LIMIT 1 FOR UPDATE) k
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
            # The body is stored as received; the merged values go to text
            # columns, which cannot hold U+0000.
            nul = b"\\u0000" in body
            if nul:
                payload = _without_nul(payload)
            ev = normalize(payload, d.source, tenant.zone, tenant.country_code)
            if nul:
                ev = Event(ev.source, ev.values, (*ev.flags, "nul_character"))
            unique[key] = _Unique(d, base64.b64encode(raw_body.pack(body)).decode(), ev)
        else:
            u.count += 1
            if d.received_at < u.delivery.received_at:
                u.delivery = d

    rows = sorted(unique.items(), key=lambda kv: kv[0])
    by_call: dict[tuple[str, str], list[_Unique]] = defaultdict(list)
    for k, u in rows:
        by_call[(k[0], k[1])].append(u)
    order = list(by_call)  # sorted: rows are
    tenant_ids = sorted({t for t, _ in order})
    pairs = {"t": [t for t, _ in order], "c": [c for _, c in order]}

    # Plan this transaction's statements for their actual batch: a plan made
    # once for any batch (PostgreSQL's generic plan, chosen after a few runs
    # of a prepared statement, often while the tables are still small)
    # looked calls up through an index on tenant_id alone, reading every
    # call of the tenant per key (6x slower at 10k calls, worse with more).
    await conn.execute(_CUSTOM_PLANS)
    # The queue of each call is computed below from the catalogue: hold it
    # still until we commit (store/tenants.py says why).
    await share_attribution(conn, tenant_ids)
    old: dict[tuple[str, str], tuple[Any, ...]] = {}
    if track_changes:
        old = {(r[0], r[1]): tuple(r[2:]) for r in await conn.execute(_LOCK_OLD, pairs)}

    # Every event of the batch is merged, duplicates included: merging an
    # event already merged changes nothing and writes nothing.
    call_rows: list[dict[str, Any]] = []
    for key in order:
        items = by_call[key]
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

    months: dict[tuple[str, str], Any] = {}
    written: list[tuple[tuple[str, str], bool, tuple[Any, ...]]] = []
    for row in await conn.execute(_UPSERT, {"rows": orjson.dumps(call_rows).decode()}):
        key = (row[0], row[1])
        if row[3]:
            written.append((key, bool(row[2]), tuple(row[5:])))
            months[key] = row[4]
        else:
            months.setdefault(key, row[4])
    if len(months) < len(by_call):
        # Created by a writer that committed while this statement waited for it.
        for r in await conn.execute(_MONTHS, pairs):
            months[(r[0], r[1])] = r[2]

    raw_rows = [
        {"t": k[0], "m": months[(k[0], k[1])].isoformat(), "c": k[1], "s": k[2], "h": k[3].hex(), "b": u.body,
         "f": ",".join(u.event.flags), "d": u.count, "r": u.delivery.received_at}
        for k, u in rows
    ]
    inserted = await conn.execute(_INSERT_RAW, {"rows": orjson.dumps(raw_rows).decode()})
    result.raw_inserted = sum(1 for r in inserted if r[4] == unique[(r[0], r[1], r[2], r[3])].count)
    result.duplicates = len(deliveries) - result.raw_inserted

    for key, created, new in written:
        if not track_changes:
            result.changes.append(CallChange(key[0], key[1], created, ()))
            continue
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
    #: The packed body, base64.
    body: str
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
