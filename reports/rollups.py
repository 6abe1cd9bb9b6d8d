"""Queue rollups (SPEC 6, 7): per tenant, queue and 15-minute / hour / day bucket.

Maintenance is incremental. Triggers on callstore.calls append the
(tenant, queue, started_at) of every inbound call inserted, changed or
deleted, old and new key, to callstore.rollup_dirty in the writer's own
transaction, so a committed change is never missed and the ingest path only
pays one INSERT ... SELECT per statement. `refresh_rollups` then

1. takes every dirty key (DELETE ... RETURNING) and turns it into the
   15-minute bucket of the tenant's zone,
2. recomputes those 15-minute rows from analytics.calls (the per-call metric
   definitions of migration 0001, so the rollups and the per-call view agree),
3. recomputes the hour rows that contain them from the 15-minute rows, and
   the day rows from the hour rows.

Its work is proportional to the changed calls (and the calls sharing their
buckets), not to the history. Refreshes are serialised by a row lock only the
service can take (store/locks.py); keys added while one runs stay for the
next one. Reports never refresh: they read the rollups as they are, and the
scheduled job keeps them within seconds of the calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.locks import hold
from store.settings import Settings
from store.tables import ROLLUP_COUNTS, ROLLUP_SUMS

#: The row of callstore.locks that serialises refreshes and rebuilds.
LOCK_NAME = "rollups"
# The planner cannot know that each key's range holds ~10 calls: it estimates
# millions of rows, so PostgreSQL's JIT compiles the statements, which took
# ~0.6 s of a 1.4 s recompute of 9,000 buckets in bench/reports. The work is
# many small index scans, where JIT gains nothing. For this transaction only.
_NO_JIT = text("SET LOCAL jit = off")

UNASSIGNED_KEY = -1

# Per-call figures -> one bucket row. Every predicate here reads a column of
# analytics.calls, where the definitions live.
_FROM_CALLS = """
    count(*) AS offered,
    count(*) FILTER (WHERE c.outcome = 'answered') AS answered,
    count(*) FILTER (WHERE c.outcome IN ('abandoned', 'short_abandoned')) AS abandoned,
    count(*) FILTER (WHERE c.outcome = 'short_abandoned') AS short_abandoned,
    count(*) FILTER (WHERE c.outcome = 'unanswered_other') AS unanswered_other,
    count(*) FILTER (WHERE c.outcome = 'in_progress') AS in_progress,
    count(*) FILTER (WHERE c.answered_within_sla) AS answered_within_sla,
    count(*) FILTER (WHERE c.abandoned_within_sla) AS abandoned_within_sla,
    count(c.wait_seconds) FILTER (WHERE c.outcome = 'answered') AS wait_answered_count,
    count(c.talk_seconds) FILTER (WHERE c.outcome = 'answered') AS talk_count,
    coalesce(sum(c.wait_seconds) FILTER (WHERE c.outcome = 'answered'), 0) AS wait_answered_sum,
    coalesce(sum(c.talk_seconds) FILTER (WHERE c.outcome = 'answered'), 0) AS talk_sum,
    max(c.wait_seconds) FILTER (WHERE c.outcome IN ('answered', 'abandoned', 'short_abandoned'))
        AS max_wait_seconds"""

_COLUMNS = ", ".join((*ROLLUP_COUNTS, *ROLLUP_SUMS, "max_wait_seconds"))
# Child rows -> parent row: counts and sums add up, the maximum of maxima.
_FROM_CHILDREN = ", ".join(
    [f"sum(r.{c}) AS {c}" for c in (*ROLLUP_COUNTS, *ROLLUP_SUMS)] + ["max(r.max_wait_seconds) AS max_wait_seconds"]
)
_CALL_COLUMNS = "c.outcome, c.wait_seconds, c.talk_seconds, c.answered_within_sla, c.abandoned_within_sla"

_KEYS = """unnest(CAST(:tenant AS text[]), CAST(:queue AS bigint[]), CAST(:bucket AS timestamptz[]))
           AS k(tenant_id, queue_key, bucket_start)"""

_TAKE_DIRTY = text(
    f"""
    WITH taken AS (
        DELETE FROM callstore.rollup_dirty d USING callstore.tenants t
        WHERE d.tenant_id = t.tenant_id
        RETURNING d.tenant_id, coalesce(d.queue_id, {UNASSIGNED_KEY}) AS queue_key,
                  callstore.bucket_15m(d.started_at, t.timezone) AS bucket_start)
    SELECT DISTINCT tenant_id, queue_key, bucket_start FROM taken ORDER BY 1, 2, 3
    """
)

_DELETE_15M = text(
    f"""
    DELETE FROM callstore.queue_rollup_15m r USING {_KEYS}
    WHERE r.tenant_id = k.tenant_id AND r.queue_key = k.queue_key AND r.bucket_start = k.bucket_start
    """
)

# Two branches so that each uses the (tenant_id, queue_id, started_at) index:
# `queue_id = x` and `queue_id IS NULL` are indexable, IS NOT DISTINCT FROM is not.
_INSERT_15M = text(
    f"""
    INSERT INTO callstore.queue_rollup_15m (tenant_id, queue_key, bucket_start, bucket_local, {_COLUMNS})
    SELECT k.tenant_id, k.queue_key, k.bucket_start, k.bucket_start AT TIME ZONE t.timezone, {_FROM_CALLS}
    FROM {_KEYS}
    JOIN callstore.tenants t ON t.tenant_id = k.tenant_id
    CROSS JOIN LATERAL (
        SELECT {_CALL_COLUMNS} FROM analytics.calls c
        WHERE c.tenant_id = k.tenant_id AND c.queue_id = k.queue_key AND c.direction = 'inbound'
          AND c.started_at >= k.bucket_start AND c.started_at < k.bucket_start + interval '15 minutes'
        UNION ALL
        SELECT {_CALL_COLUMNS} FROM analytics.calls c
        WHERE k.queue_key = {UNASSIGNED_KEY} AND c.tenant_id = k.tenant_id AND c.queue_id IS NULL
          AND c.direction = 'inbound'
          AND c.started_at >= k.bucket_start AND c.started_at < k.bucket_start + interval '15 minutes'
    ) c
    GROUP BY k.tenant_id, k.queue_key, k.bucket_start, t.timezone
    """
)


def _parents(table: str, child: str, start: str, end: str) -> tuple[str, str]:
    """DELETE and INSERT statements recomputing the parent rows of the changed 15m keys.

    `start` maps a child's bucket start to its parent's (in zone t.timezone),
    `end` the parent's start to its end.
    """
    parents = f"""(SELECT DISTINCT k.tenant_id, k.queue_key, {start.format("k.bucket_start")} AS bucket_start,
                          t.timezone
                   FROM {_KEYS} JOIN callstore.tenants t ON t.tenant_id = k.tenant_id) p"""
    delete = f"""
        DELETE FROM callstore.{table} r USING {parents}
        WHERE r.tenant_id = p.tenant_id AND r.queue_key = p.queue_key AND r.bucket_start = p.bucket_start"""
    # A lateral aggregate per parent: one index range scan each (a join
    # would be planned as a merge join rescanning the child table).
    insert = f"""
        INSERT INTO callstore.{table} (tenant_id, queue_key, bucket_start, bucket_local, {_COLUMNS})
        SELECT p.tenant_id, p.queue_key, p.bucket_start, p.bucket_start AT TIME ZONE p.timezone, a.*
        FROM {parents}
        CROSS JOIN LATERAL (
            SELECT {_FROM_CHILDREN} FROM callstore.{child} r
            WHERE r.tenant_id = p.tenant_id AND r.queue_key = p.queue_key
              AND r.bucket_start >= p.bucket_start AND r.bucket_start < {end.format("p.bucket_start")}) a
        WHERE a.offered IS NOT NULL"""
    return delete, insert


_HOUR = "callstore.bucket_hour({}, t.timezone)"
_DAY = "callstore.bucket_day({}, t.timezone)"
_STEPS = [
    text(s)
    for s in (
        *_parents("queue_rollup_hourly", "queue_rollup_15m", _HOUR, "{} + interval '1 hour'"),
        *_parents("queue_rollup_daily", "queue_rollup_hourly", _DAY, "callstore.next_day({}, p.timezone)"),
    )
]


@dataclass(frozen=True)
class RefreshResult:
    buckets_15m: int
    seconds: float


async def refresh_rollups(conn: AsyncConnection) -> RefreshResult:
    """Recompute the buckets of every call changed since the last refresh (caller commits)."""
    t0 = time.perf_counter()
    await hold(conn, LOCK_NAME)
    await conn.execute(_NO_JIT)
    keys = (await conn.execute(_TAKE_DIRTY)).all()
    if keys:
        params = {
            "tenant": [k[0] for k in keys],
            "queue": [k[1] for k in keys],
            "bucket": [k[2] for k in keys],
        }
        await conn.execute(_DELETE_15M, params)
        await conn.execute(_INSERT_15M, params)
        for step in _STEPS:
            await conn.execute(step, params)
    return RefreshResult(len(keys), time.perf_counter() - t0)


_CLEAR = [
    text(s)
    for s in (
        "DELETE FROM callstore.rollup_dirty d USING callstore.tenants t WHERE d.tenant_id = t.tenant_id",
        "DELETE FROM callstore.queue_rollup_15m",
        "DELETE FROM callstore.queue_rollup_hourly",
        "DELETE FROM callstore.queue_rollup_daily",
    )
]

# Week-long windows starting at local midnight, so that no hour or day bucket
# straddles two windows; each statement stays well below the command timeout.
_WINDOWS = text(
    """
    SELECT t.tenant_id, d AT TIME ZONE t.timezone AS lo, (d + interval '7 days') AT TIME ZONE t.timezone AS hi
    FROM callstore.tenants t
    CROSS JOIN LATERAL (SELECT min(started_at) AS first, max(started_at) AS last FROM callstore.calls c
                        WHERE c.tenant_id = t.tenant_id AND c.direction = 'inbound') r
    CROSS JOIN LATERAL generate_series(date_trunc('day', r.first AT TIME ZONE t.timezone),
                                       r.last AT TIME ZONE t.timezone, interval '7 days') d
    ORDER BY 1, 2
    """
)

_WINDOW_STEPS = [
    text(s)
    for s in (
        f"""
        INSERT INTO callstore.queue_rollup_15m (tenant_id, queue_key, bucket_start, bucket_local, {_COLUMNS})
        SELECT c.tenant_id, coalesce(c.queue_id, {UNASSIGNED_KEY}), b.bucket_start,
               b.bucket_start AT TIME ZONE t.timezone, {_FROM_CALLS}
        FROM analytics.calls c
        JOIN callstore.tenants t ON t.tenant_id = c.tenant_id
        CROSS JOIN LATERAL (SELECT callstore.bucket_15m(c.started_at, t.timezone) AS bucket_start) b
        WHERE c.tenant_id = :tenant AND c.direction = 'inbound' AND c.started_at >= :lo AND c.started_at < :hi
        GROUP BY c.tenant_id, coalesce(c.queue_id, {UNASSIGNED_KEY}), b.bucket_start, t.timezone
        """,
        *(
            f"""
            INSERT INTO callstore.{table} (tenant_id, queue_key, bucket_start, bucket_local, {_COLUMNS})
            SELECT r.tenant_id, r.queue_key, p.bucket_start, p.bucket_start AT TIME ZONE t.timezone, {_FROM_CHILDREN}
            FROM callstore.{child} r
            JOIN callstore.tenants t ON t.tenant_id = r.tenant_id
            CROSS JOIN LATERAL (SELECT {start.format("r.bucket_start")} AS bucket_start) p
            WHERE r.tenant_id = :tenant AND r.bucket_start >= :lo AND r.bucket_start < :hi
            GROUP BY r.tenant_id, r.queue_key, p.bucket_start, t.timezone
            """
            for table, child, start in (
                ("queue_rollup_hourly", "queue_rollup_15m", _HOUR),
                ("queue_rollup_daily", "queue_rollup_hourly", _DAY),
            )
        ),
    )
]


async def rebuild_rollups(conn: AsyncConnection) -> float:
    """Recompute every rollup row from callstore.calls (caller commits); returns seconds."""
    t0 = time.perf_counter()
    await hold(conn, LOCK_NAME)
    for step in _CLEAR:
        await conn.execute(step)
    for tenant_id, lo, hi in (await conn.execute(_WINDOWS)).all():
        for step in _WINDOW_STEPS:
            await conn.execute(step, {"tenant": tenant_id, "lo": lo, "hi": hi})
    return time.perf_counter() - t0


async def refresh_job(engine: AsyncEngine, settings: Settings) -> RefreshResult:
    """The scheduled job: one refresh in its own transaction."""
    async with engine.begin() as conn:
        return await refresh_rollups(conn)
