"""The lifecycle of raw events: their partitions and each tenant's retention.

`callstore.raw_events` is partitioned by tenant (LIST), each tenant's table
by month (RANGE on `raw_month`, the first day of the UTC month in which the
call's first raw event was stored; store/ingest.py). The partitions live in
schema `callstore_raw`, named from a hash of the tenant id.

An insert is never refused: rows of a tenant without a table wait in
`callstore_raw.raw_events_default`, rows of a month without a partition in
the tenant's DEFAULT partition. `maintain()` (at start, and the
`raw-partitions` job under its lease) creates each configured tenant's table
and its partitions from the current month to MONTHS_AHEAD months ahead, moves
rows waiting in a DEFAULT partition into their own partition, then applies
each tenant's `raw_events_retention_days` by dropping whole month partitions
(never a DELETE of rows one by one). The DDL is done by SQL functions of
migration 0015 (callstore.raw_ensure_tenant/raw_ensure_month/raw_drop_before);
concurrent maintainers serialise on a row of callstore.locks.

Retention removes raw evidence only: the calls, the rollups, the reconciliation
ledger and recordings never read raw events back. A month is dropped once all
of it is older than the retention period; the tenant's oldest kept month (its
floor, `tenants.raw_floor`) is where later events of a call whose month was
dropped are stored, so a delivery repeated after its original was dropped is
stored once more there and merged again, which changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store import locks
from store.settings import Settings

log = logging.getLogger("callstore.raw_partitions")

#: Monthly partitions exist from the current month to this many months ahead.
MONTHS_AHEAD = 2
#: The job's interval: a day is enough to stay ahead; more often, rows that
#: landed in a DEFAULT partition move out sooner.
EVERY_SECONDS = 6 * 3600
#: DDL waits at most this long for the tables it changes (a long report could
#: hold them); the next run tries again.
LOCK_TIMEOUT = "10s"
_LOCK = "raw-partitions"


@dataclass
class Maintenance:
    tenants_created: list[str] = field(default_factory=list)
    months_created: list[tuple[str, date]] = field(default_factory=list)
    dropped: dict[str, list[date]] = field(default_factory=dict)


def month_of(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def add_months(month: date, n: int) -> date:
    y, m = divmod(month.year * 12 + month.month - 1 + n, 12)
    return date(y, m + 1, 1)


def retention_floor(now: datetime, days: int) -> date:
    """The oldest month kept: a month is dropped once all of it is older than `days` days."""
    return month_of((now - timedelta(days=days)).astimezone(timezone.utc))


async def ensure(conn: AsyncConnection, tenant_ids: Iterable[str], now: datetime, out: Maintenance) -> None:
    """Tenants' tables and month partitions (current to MONTHS_AHEAD), and rows out of DEFAULT partitions."""
    await _prepare(conn)
    current = month_of(now.astimezone(timezone.utc))
    for tenant_id in sorted(set(tenant_ids)):
        if await conn.scalar(text("SELECT callstore.raw_ensure_tenant(:t)"), {"t": tenant_id}):
            out.tenants_created.append(tenant_id)
        for i in range(MONTHS_AHEAD + 1):
            month = add_months(current, i)
            if await conn.scalar(text("SELECT callstore.raw_ensure_month(:t, :m)"), {"t": tenant_id, "m": month}):
                out.months_created.append((tenant_id, month))
    # Rows that waited for a table or partition (none unless inserts outran the schedule).
    for (tenant_id,) in (await conn.execute(
            text("SELECT DISTINCT tenant_id FROM callstore_raw.raw_events_default ORDER BY 1"))).all():
        if await conn.scalar(text("SELECT callstore.raw_ensure_tenant(:t)"), {"t": tenant_id}):
            out.tenants_created.append(tenant_id)
    for tenant_id, month in await waiting(conn):
        if await conn.scalar(text("SELECT callstore.raw_ensure_month(:t, :m)"), {"t": tenant_id, "m": month}):
            out.months_created.append((tenant_id, month))


async def waiting(conn: AsyncConnection) -> list[tuple[str, date]]:
    """(tenant, month) of the rows held by a tenant's DEFAULT partition (each read on its own:
    a filter on the parent would read every partition)."""
    names = (await conn.execute(text(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'callstore_raw'::regnamespace"
        " AND c.relkind = 'r' AND c.relname ~ '^t_[0-9a-f]{16}_default$' ORDER BY 1"))).scalars().all()
    out: list[tuple[str, date]] = []
    for name in names:  # a name matched above: t_ and hex digits only
        rows = await conn.execute(text(f'SELECT DISTINCT tenant_id, raw_month FROM callstore_raw."{name}" ORDER BY 1, 2'))
        out.extend((r[0], r[1]) for r in rows)
    return out


async def drop_before(conn: AsyncConnection, tenant_id: str, floor: date) -> list[date]:
    """Keep the tenant's raw events from month `floor` on; the months dropped."""
    await _prepare(conn)
    rows = await conn.execute(text("SELECT callstore.raw_drop_before(:t, :f)"), {"t": tenant_id, "f": floor})
    return [r[0] for r in rows]


async def maintain(engine: AsyncEngine, settings: Settings, now: datetime | None = None) -> Maintenance:
    """Partitions ahead for every configured tenant, then each tenant's retention.

    Each tenant's retention is its own transaction: one tenant's failure
    (e.g. a lock not granted in time) does not hold back the others'.
    """
    now = now or datetime.now(timezone.utc)
    out = Maintenance()
    async with engine.begin() as conn:
        await ensure(conn, [t.tenant_id for t in settings.tenants], now, out)
    for tenant_id, month in out.months_created:
        log.info("raw events: partition of %s created for tenant %r", month.strftime("%Y-%m"), tenant_id)
    failed: Exception | None = None
    for tenant in settings.tenants:
        days = tenant.raw_events_retention_days
        if days is None:
            continue
        floor = retention_floor(now, days)
        try:
            async with engine.begin() as conn:
                dropped = await drop_before(conn, tenant.tenant_id, floor)
        except Exception as exc:  # noqa: BLE001 - one tenant's failure does not hold back the others'
            log.error("raw events: retention of tenant %r failed (%s); the next run tries again",
                      tenant.tenant_id, type(exc).__name__)
            failed = failed or exc
            continue
        out.dropped[tenant.tenant_id] = dropped
        if dropped:
            log.info("raw events: tenant %r keeps %d days: dropped the raw events of %s (kept from %s)",
                     tenant.tenant_id, days, ", ".join(m.strftime("%Y-%m") for m in dropped), floor.strftime("%Y-%m"))
    if failed is not None:
        raise failed  # the run counts as failed, after every tenant had its turn
    return out


async def run_job(engine: AsyncEngine, settings: Settings) -> dict[str, int]:
    done = await maintain(engine, settings)
    return {"partitions_created": len(done.months_created),
            "months_dropped": sum(len(v) for v in done.dropped.values())}


async def _prepare(conn: AsyncConnection) -> None:
    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    await locks.hold(conn, _LOCK)
