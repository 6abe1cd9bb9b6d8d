"""The inbound-queue catalogue (`GET /v1/queues/inbound`) and call attribution.

A call belongs to the queue whose `callinNumber` is its hotline, else to the
queue a manual mapping names, else to none (`unassigned`); only inbound calls
(only inbound calls; hotline = callinNumber, else a manual mapping, else unassigned). The rule is the SQL function `callstore.attribute_queue`, which
ingest applies to every written row. When the catalogue or a mapping changes,
the calls of the affected hotlines are re-attributed with that same function
(and their `updated_at` bumped, so incremental rollups pick them up).
Every change of the catalogue or of a mapping first takes the tenant's
attribution lock (store/tenants.py), so a call written at the same time is
never left with the queue of the old catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.merge import parse_int
from store.phone import canonical_phone
from store.settings import TenantSettings
from store.tenants import lock_attribution
from sync.client import AlohubClient
from sync.errors import AlohubProtocolError

ROUTE = "queues"
PAGE_SIZE = 100


async def fetch_queues(client: AlohubClient, *, size: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """Every listed queue: `page` from 0 with `size`, until `totalRecord` is reached."""
    records: list[dict[str, Any]] = []
    page = 0
    while True:
        env = await client.gateway("GET", ROUTE, "/v1/queues/inbound", params={"page": page, "size": size})
        records.extend(env.data)
        if not env.data or (env.total is not None and len(records) >= env.total):
            break
        if env.total is None and len(env.data) < size:
            break
        page += 1
        if page > 10_000:
            raise AlohubProtocolError("queues: more than 10,000 pages; totalRecord is not being reached",
                                      route=ROUTE)
    return records


@dataclass(frozen=True)
class CatalogueChange:
    listed: int
    added: int
    removed: int
    renumbered: int
    reattributed: int

    def summary(self) -> str:
        return (f"{self.listed:,} queues listed ({self.added:,} new, {self.removed:,} removed, "
                f"{self.renumbered:,} renumbered); {self.reattributed:,} calls re-attributed")


@dataclass(frozen=True)
class QueueRow:
    queue_id: int
    name: str | None
    callin_number: str | None
    callin_number_canonical: str | None
    strategy: int | None
    time_wait_seconds: int | None
    raw: dict[str, Any]


def queue_rows(records: Iterable[dict[str, Any]], country_code: str) -> list[QueueRow]:
    rows: dict[int, QueueRow] = {}
    for r in records:
        qid = parse_int(r.get("callinId"))
        if qid is None:
            continue  # a queue without an id cannot be attributed to
        number = r.get("callinNumber")
        number = str(number).strip() if number not in (None, "") else None
        name = r.get("callinName")
        rows[qid] = QueueRow(
            queue_id=qid,
            name=str(name) if name is not None else None,
            callin_number=number,
            callin_number_canonical=(canonical_phone(number, country_code) or number) if number else None,
            strategy=parse_int(r.get("strategy")),
            time_wait_seconds=parse_int(r.get("timeWait")),
            raw=r,
        )
    return list(rows.values())


_ACTIVE = text(
    "SELECT queue_id, callin_number_canonical FROM callstore.queues WHERE tenant_id = :t AND removed_at IS NULL"
)

_UPSERT = text(
    """
    INSERT INTO callstore.queues AS q
        (tenant_id, queue_id, name, callin_number, callin_number_canonical, strategy, time_wait_seconds, raw,
         synced_at, removed_at)
    SELECT :t, u.queue_id, u.name, u.callin_number, u.canonical, u.strategy, u.time_wait, u.raw, :now, NULL
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(queue_id bigint, name text, callin_number text, canonical text, strategy int, time_wait int, raw jsonb)
    ON CONFLICT (tenant_id, queue_id) DO UPDATE SET
        name = excluded.name, callin_number = excluded.callin_number,
        callin_number_canonical = excluded.callin_number_canonical, strategy = excluded.strategy,
        time_wait_seconds = excluded.time_wait_seconds, raw = excluded.raw, synced_at = excluded.synced_at,
        removed_at = NULL
    """
)

_REMOVE = text(
    """
    UPDATE callstore.queues SET removed_at = :now
    WHERE tenant_id = :t AND removed_at IS NULL AND NOT (queue_id = ANY(CAST(:ids AS bigint[])))
    """
)

_REATTRIBUTE = text(
    """
    UPDATE callstore.calls c
    SET queue_id = callstore.attribute_queue(c.tenant_id, c.direction, c.hotline), updated_at = now()
    WHERE c.tenant_id = :t AND c.hotline = ANY(CAST(:hotlines AS text[]))
      AND c.queue_id IS DISTINCT FROM callstore.attribute_queue(c.tenant_id, c.direction, c.hotline)
    """
)


async def reattribute(conn: AsyncConnection, tenant_id: str, hotlines: Iterable[str]) -> int:
    """Re-attribute the calls of `hotlines` (canonical numbers); return how many moved."""
    numbers = sorted(set(hotlines))
    if not numbers:
        return 0
    result = await conn.execute(_REATTRIBUTE, {"t": tenant_id, "hotlines": numbers})
    return int(result.rowcount or 0)


async def store_catalogue(conn: AsyncConnection, tenant: TenantSettings, records: Sequence[dict[str, Any]],
                          now: datetime) -> CatalogueChange:
    """Make callstore.queues the listed catalogue; mark unlisted queues removed; re-attribute."""
    rows = queue_rows(records, tenant.country_code)
    await lock_attribution(conn, tenant.tenant_id)
    before = {(qid, num) for qid, num in await conn.execute(_ACTIVE, {"t": tenant.tenant_id})}
    payload = [
        {"queue_id": r.queue_id, "name": r.name, "callin_number": r.callin_number,
         "canonical": r.callin_number_canonical, "strategy": r.strategy, "time_wait": r.time_wait_seconds,
         "raw": r.raw}
        for r in rows
    ]
    if payload:
        await conn.execute(_UPSERT, {"t": tenant.tenant_id, "now": now, "rows": orjson.dumps(payload).decode()})
    await conn.execute(_REMOVE, {"t": tenant.tenant_id, "now": now, "ids": [r.queue_id for r in rows]})
    after = {(r.queue_id, r.callin_number_canonical) for r in rows}
    changed = before ^ after
    ids_before = {q for q, _ in before}
    ids_after = {q for q, _ in after}
    moved = await reattribute(conn, tenant.tenant_id, (num for _, num in changed if num))
    return CatalogueChange(
        listed=len(rows),
        added=len(ids_after - ids_before),
        removed=len(ids_before - ids_after),
        renumbered=len({q for q, _ in changed} & ids_before & ids_after),
        reattributed=moved,
    )


# -- manual mappings ------------------------------------------------------------

@dataclass(frozen=True)
class Mapping:
    hotline: str
    queue_id: int
    queue_name: str | None
    note: str
    created_at: datetime
    #: The catalogue also lists this number (the catalogue wins).
    shadowed_by: int | None


def canonical_hotline(value: str, country_code: str) -> str | None:
    return canonical_phone(value, country_code)


async def queue_exists(conn: AsyncConnection, tenant_id: str, queue_id: int) -> bool:
    return bool(await conn.scalar(
        text("SELECT EXISTS (SELECT 1 FROM callstore.queues WHERE tenant_id = :t AND queue_id = :q"
             " AND removed_at IS NULL)"),
        {"t": tenant_id, "q": queue_id},
    ))


async def set_mapping(
    conn: AsyncConnection, tenant_id: str, hotline: str, queue_id: int, note: str | None = None
) -> int:
    """Map `hotline` (canonical) to `queue_id`; return how many calls moved.

    `note` None keeps the note of an existing mapping (a new one gets "").
    """
    await lock_attribution(conn, tenant_id)
    await conn.execute(
        text(
            """
            INSERT INTO callstore.queue_mappings (tenant_id, hotline, queue_id, note)
            VALUES (:t, :h, :q, coalesce(:n, ''))
            ON CONFLICT (tenant_id, hotline) DO UPDATE
            SET queue_id = excluded.queue_id, note = coalesce(:n, callstore.queue_mappings.note)
            """
        ),
        {"t": tenant_id, "h": hotline, "q": queue_id, "n": note},
    )
    return await reattribute(conn, tenant_id, [hotline])


async def remove_mapping(conn: AsyncConnection, tenant_id: str, hotline: str) -> tuple[bool, int]:
    """Remove the mapping of `hotline`; return whether there was one and how many calls moved."""
    await lock_attribution(conn, tenant_id)
    result = await conn.execute(
        text("DELETE FROM callstore.queue_mappings WHERE tenant_id = :t AND hotline = :h"),
        {"t": tenant_id, "h": hotline},
    )
    if not result.rowcount:
        return False, 0
    return True, await reattribute(conn, tenant_id, [hotline])


async def list_mappings(conn: AsyncConnection, tenant_id: str) -> list[Mapping]:
    rows = await conn.execute(
        text(
            """
            SELECT m.hotline, m.queue_id, q.name, m.note, m.created_at,
                   (SELECT min(c.queue_id) FROM callstore.queues c WHERE c.tenant_id = m.tenant_id
                      AND c.callin_number_canonical = m.hotline AND c.removed_at IS NULL)
            FROM callstore.queue_mappings m
            LEFT JOIN callstore.queues q ON q.tenant_id = m.tenant_id AND q.queue_id = m.queue_id
            WHERE m.tenant_id = :t ORDER BY m.hotline
            """
        ),
        {"t": tenant_id},
    )
    return [Mapping(*r) for r in rows]


async def list_queues(conn: AsyncConnection, tenant_id: str) -> list[tuple[int, str | None, str | None, datetime | None]]:
    rows = await conn.execute(
        text("SELECT queue_id, name, callin_number_canonical, removed_at FROM callstore.queues"
             " WHERE tenant_id = :t ORDER BY queue_id"),
        {"t": tenant_id},
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]
