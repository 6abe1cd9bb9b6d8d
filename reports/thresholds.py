"""Per-queue thresholds: versioned, append-only.

A new version is a row of callstore.queue_thresholds. Its insert trigger
recompiles callstore.sla_seconds / short_abandon_seconds (the one definition
analytics.calls and the rollups use) and marks the calls it governs, so the
next rollup refresh recomputes their history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

DEFAULT_SLA_SECONDS = 20
DEFAULT_SHORT_ABANDON_SECONDS = 5


@dataclass(frozen=True)
class ThresholdVersion:
    id: int
    tenant_id: str
    queue_id: int | None  # None: the unassigned queue
    valid_from: datetime | None  # None: from the beginning
    sla_seconds: int
    short_abandon_seconds: int
    note: str
    created_at: datetime


_INSERT = text(
    """
    INSERT INTO callstore.queue_thresholds (tenant_id, queue_id, valid_from, sla_seconds, short_abandon_seconds, note)
    VALUES (:tenant, :queue, coalesce(CAST(:since AS timestamptz), '-infinity'), :sla, :short, :note)
    RETURNING id
    """
)

_LIST = text(
    """
    SELECT id, tenant_id, queue_id, CASE WHEN valid_from = '-infinity' THEN NULL ELSE valid_from END,
           sla_seconds, short_abandon_seconds, note, created_at
    FROM callstore.queue_thresholds
    WHERE CAST(:tenant AS text) IS NULL OR tenant_id = :tenant
    ORDER BY tenant_id, queue_id NULLS FIRST, valid_from, id
    """
)

_EFFECTIVE = text(
    "SELECT callstore.sla_seconds(:tenant, :queue, :at), callstore.short_abandon_seconds(:tenant, :queue, :at)"
)


async def set_thresholds(
    conn: AsyncConnection,
    tenant_id: str,
    queue_id: int | None,
    *,
    sla_seconds: int,
    short_abandon_seconds: int,
    valid_from: datetime | None = None,
    note: str = "",
) -> int:
    """Record a new version for one queue (from `valid_from`, or for all history); returns its id."""
    if sla_seconds < 0 or short_abandon_seconds < 0:
        raise ValueError("thresholds are whole seconds >= 0")
    row = await conn.execute(
        _INSERT,
        {"tenant": tenant_id, "queue": queue_id, "since": valid_from, "sla": sla_seconds,
         "short": short_abandon_seconds, "note": note},
    )
    return int(row.scalar_one())


async def list_thresholds(conn: AsyncConnection, tenant_id: str | None = None) -> list[ThresholdVersion]:
    """Every version ever recorded, oldest first per queue."""
    return [ThresholdVersion(*r) for r in await conn.execute(_LIST, {"tenant": tenant_id})]


async def effective_thresholds(
    conn: AsyncConnection, tenant_id: str, queue_id: int | None, at: datetime
) -> tuple[int, int]:
    """(sla_seconds, short_abandon_seconds) that apply to a call of the queue started at `at`."""
    sla, short = (await conn.execute(_EFFECTIVE, {"tenant": tenant_id, "queue": queue_id, "at": at})).one()
    return int(sla), int(short)
