"""The agent rollup: per tenant, agent and local day (analytics.agent_daily).

Maintained like the queue rollups (reports/rollups.py): triggers on
callstore.calls append the (tenant, agent, started_at) of every call
inserted, deleted, or changed in a field the figures read (agent, direction,
status, times, hold), old and new key, to callstore.agent_dirty in the
writer's transaction. `refresh_agent_rollups` takes those keys, turns them
into local days and recomputes just those agent-days from analytics.calls,
so its work is proportional to the changed calls, not to the history.

Figures per agent-day (the definitions of analytics.calls):
- calls: calls of the agent that started that day, any direction or outcome;
- answered: inbound calls with outcome answered;
- outbound: outbound calls, any outcome;
- talk_count / talk_sum: answered calls of both directions with a talk time
  (ended_at − answered_at) and its sum; aht = talk_sum / talk_count;
- hold_sum: Alohub's holding_duration over every call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.locks import hold
from store.settings import Settings


_FIGURES = """
    count(*) AS calls,
    count(*) FILTER (WHERE c.direction = 'inbound' AND c.outcome = 'answered') AS answered,
    count(*) FILTER (WHERE c.direction = 'outbound') AS outbound,
    count(c.talk_seconds) FILTER (WHERE c.outcome = 'answered') AS talk_count,
    coalesce(sum(c.talk_seconds) FILTER (WHERE c.outcome = 'answered'), 0) AS talk_sum,
    coalesce(sum(c.hold_seconds), 0) AS hold_sum"""
_COLUMNS = "calls, answered, outbound, talk_count, talk_sum, hold_sum"

_KEYS = "unnest(CAST(:tenant AS text[]), CAST(:agent AS text[]), CAST(:day AS date[])) AS k(tenant_id, agent, day)"

_TAKE_DIRTY = text(
    """
    WITH taken AS (
        DELETE FROM callstore.agent_dirty d USING callstore.tenants t
        WHERE d.tenant_id = t.tenant_id
        RETURNING d.tenant_id, d.agent, (d.started_at AT TIME ZONE t.timezone)::date AS day)
    SELECT DISTINCT tenant_id, agent, day FROM taken ORDER BY 1, 2, 3
    """
)

_DELETE = text(
    f"""
    DELETE FROM callstore.agent_rollup_daily r USING {_KEYS}
    WHERE r.tenant_id = k.tenant_id AND r.agent = k.agent AND r.day = k.day
    """
)

# The day's bounds are local midnights (23 or 25 hours apart on DST days);
# one (tenant, agent, started_at) index range scan per key.
_INSERT = text(
    f"""
    INSERT INTO callstore.agent_rollup_daily (tenant_id, agent, day, day_start, {_COLUMNS})
    SELECT k.tenant_id, k.agent, k.day, CAST(k.day AS timestamp) AT TIME ZONE t.timezone, a.*
    FROM {_KEYS}
    JOIN callstore.tenants t ON t.tenant_id = k.tenant_id
    CROSS JOIN LATERAL (
        SELECT {_FIGURES}
        FROM analytics.calls c
        WHERE c.tenant_id = k.tenant_id AND c.agent = k.agent
          AND c.started_at >= CAST(k.day AS timestamp) AT TIME ZONE t.timezone
          AND c.started_at < CAST(k.day + 1 AS timestamp) AT TIME ZONE t.timezone
        HAVING count(*) > 0
    ) a
    """
)

_REBUILD = [
    text(s)
    for s in (
        "DELETE FROM callstore.agent_dirty d USING callstore.tenants t WHERE d.tenant_id = t.tenant_id",
        "DELETE FROM callstore.agent_rollup_daily",
        f"""
        INSERT INTO callstore.agent_rollup_daily (tenant_id, agent, day, day_start, {_COLUMNS})
        SELECT c.tenant_id, c.agent, (c.started_at AT TIME ZONE t.timezone)::date,
               CAST((c.started_at AT TIME ZONE t.timezone)::date AS timestamp) AT TIME ZONE t.timezone, {_FIGURES}
        FROM analytics.calls c
        JOIN callstore.tenants t ON t.tenant_id = c.tenant_id
        WHERE c.agent IS NOT NULL AND c.started_at IS NOT NULL
        GROUP BY c.tenant_id, c.agent, 3, 4
        """,
    )
]


@dataclass(frozen=True)
class AgentRefresh:
    agent_days: int
    seconds: float


async def refresh_agent_rollups(conn: AsyncConnection) -> AgentRefresh:
    """Recompute the agent-days of every call changed since the last refresh (caller commits)."""
    t0 = time.perf_counter()
    await hold(conn, "agent_rollups")
    keys = (await conn.execute(_TAKE_DIRTY)).all()
    if keys:
        params = {"tenant": [k[0] for k in keys], "agent": [k[1] for k in keys], "day": [k[2] for k in keys]}
        await conn.execute(_DELETE, params)
        await conn.execute(_INSERT, params)
    return AgentRefresh(len(keys), time.perf_counter() - t0)


async def rebuild_agent_rollups(conn: AsyncConnection) -> float:
    """Recompute every agent-day from callstore.calls (caller commits); returns seconds."""
    t0 = time.perf_counter()
    await hold(conn, "agent_rollups")
    for step in _REBUILD:
        await conn.execute(step)
    return time.perf_counter() - t0


async def agent_refresh_job(engine: AsyncEngine, settings: Settings) -> AgentRefresh:
    """The scheduled job: one refresh in its own transaction."""
    async with engine.begin() as conn:
        return await refresh_agent_rollups(conn)
