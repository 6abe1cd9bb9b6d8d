"""The BI role sees local times, the week and month views and the agent view, not the rollup tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.agent_rollups import refresh_agent_rollups
from reports.bi_role import ensure_bi_role
from reports.rollups import refresh_rollups
from store.settings import Settings
from tests.reports.test_bi_role import as_role
from tests.reports.test_queries import seed


async def test_bi_role_reads_local_times_and_new_views(engine: AsyncEngine, settings: Settings, db_url: str) -> None:
    await seed(engine, settings)
    role, password = f"bi_{uuid.uuid4().hex[:8]}", "pw-local"
    async with engine.begin() as conn:
        await refresh_rollups(conn)
        await refresh_agent_rollups(conn)
        await ensure_bi_role(conn, role, password)
    try:
        conn = await asyncpg.connect(as_role(db_url, role, password))
        try:
            row = await conn.fetchrow("SELECT started_at, started_at_local, answered_at_local, ended_at_local, local_date "
                                      "FROM analytics.calls WHERE call_id = 'a1'")
            # 09:00:10 in Ho Chi Minh City (+07:00), whatever the session's time zone.
            assert row["started_at_local"] == datetime(2026, 11, 20, 9, 0, 10)
            assert row["answered_at_local"] == datetime(2026, 11, 20, 9, 0, 22)
            assert row["ended_at_local"] == datetime(2026, 11, 20, 9, 1, 22)
            assert row["local_date"] == date(2026, 11, 20)
            week = await conn.fetch("SELECT bucket_local, offered FROM analytics.queue_stats_weekly "
                                    "WHERE queue_id = 101 ORDER BY 1")
            assert [(r["bucket_local"], r["offered"]) for r in week] == [(datetime(2026, 11, 16), 4)]
            month = await conn.fetch("SELECT bucket_local, offered, talk_count, talk_sum FROM analytics.queue_stats_monthly")
            assert sum(r["offered"] for r in month) == 5 and all(r["bucket_local"] == datetime(2026, 11, 1) for r in month)
            [agent] = await conn.fetch("SELECT * FROM analytics.agent_daily WHERE day = '2026-11-20'")
            assert (agent["agent"], agent["answered"], agent["talk_seconds"], agent["aht_seconds"]) == ("agent1", 2, 120, 60.0)
            for table in ("agent_rollup_daily", "agent_dirty"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT 1 FROM callstore.{table} LIMIT 1")
        finally:
            await conn.close()
    finally:
        async with engine.begin() as c:
            await c.execute(text(f"DROP OWNED BY {role}"))
            await c.execute(text(f"DROP ROLE {role}"))
