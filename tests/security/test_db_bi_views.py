"""The BI role reads every analytics view with `SELECT *`, as BI tools browse them,
with rows in every table behind the views (before: `permission denied for table
recordings`, from callstore.recording_status(), as soon as the archive had rows)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.settings import Settings
from tests.security.bi import TABLES_BEHIND_VIEWS, bi_role, connect, fill_every_table


async def test_every_analytics_view_reads_as_the_bi_role(engine: AsyncEngine, db_url: str, settings: Settings) -> None:
    await fill_every_table(engine, settings)
    async with engine.connect() as conn:
        behind = (await conn.execute(TABLES_BEHIND_VIEWS)).all()
        views = [r[0] for r in await conn.execute(text(
            "SELECT format('%I.%I', schemaname, viewname) FROM pg_views WHERE schemaname = 'analytics' "
            "UNION SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews WHERE schemaname = 'analytics' "
            "ORDER BY 1"))]
        empty = sorted({f"{view} reads {table}" for view, table in behind
                        if not await conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {table})"))})
    assert len(views) >= 10 and {v for v, _ in behind} == set(views)
    # A new view reading a table this test does not fill: fill it in tests/security/bi.py.
    assert empty == []

    async with bi_role(engine, db_url) as role:
        bi = await connect(role)
        try:
            for view in views:
                rows = await bi.fetch(f"SELECT * FROM {view}")
                assert rows, f"{view} is empty for the BI role"
            # The column that failed: the archive's state, read through a function the role may not bypass.
            status = await bi.fetch("SELECT call_id, recording_status FROM calls ORDER BY call_id")
            assert {r["call_id"]: r["recording_status"] for r in status} == {
                "acme-c0": "stored", "acme-c1": "pending", "acme-c2": "pending",
                "default-c0": "stored", "default-c1": "pending", "default-c2": "pending",
                "acme-o1": "none", "default-o1": "none"}  # the campaign attempts: no recording
            # The versioned thresholds apply for the role as for the service (sla 15 s: wait 10 and 12 are within).
            within = await bi.fetchval("SELECT count(*) FROM calls WHERE answered_within_sla")
            assert within == 4
        finally:
            await bi.close()


async def test_a_hostile_search_path_does_not_redirect_the_definer_function(
        engine: AsyncEngine, db_url: str, settings: Settings) -> None:
    """recording_status runs with the owner's rights: its search_path is fixed, so
    objects a caller puts first on its own path are never resolved inside it."""
    await fill_every_table(engine, settings)
    async with engine.connect() as conn:
        config = await conn.scalar(text(
            "SELECT proconfig FROM pg_proc WHERE oid = 'callstore.recording_status(text, text, text)'::regprocedure"))
        definer = await conn.scalar(text(
            "SELECT prosecdef FROM pg_proc WHERE oid = 'callstore.recording_status(text, text, text)'::regprocedure"))
    assert definer is True and config == ["search_path=pg_catalog, pg_temp"]
    async with bi_role(engine, db_url) as role:
        bi = await connect(role)
        try:
            await bi.execute("SET search_path = pg_temp, analytics, public")
            assert await bi.fetchval("SELECT recording_status FROM analytics.calls WHERE call_id = 'default-c0'") == "stored"
        finally:
            await bi.close()


async def test_a_bi_role_made_before_the_upgrade_keeps_reading(engine: AsyncEngine, db_url: str,
                                                               settings: Settings) -> None:
    """Upgrading revokes EXECUTE on callstore's functions from PUBLIC; roles that
    already read analytics get EXECUTE on what the views call, in the same migration."""
    from store import migrate
    from tests.security.bi import PASSWORD, as_role

    await migrate.downgrade(engine, "0006")
    name = f"bi_{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:  # what `report bi-role` granted before
        for sql in (f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD.replace(chr(39), chr(39) * 2)}'",
                    f"GRANT USAGE ON SCHEMA callstore, analytics TO {name}",
                    f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {name}"):
            await conn.execute(text(sql))
    try:
        await migrate.upgrade(engine)
        await fill_every_table(engine, settings)
        bi = await asyncpg.connect(as_role(db_url, name, PASSWORD))
        try:
            assert len(await bi.fetch("SELECT * FROM analytics.calls")) == 8  # six inbound calls and two campaign attempts
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await bi.fetch("SELECT callstore.attribute_queue('default', 'inbound', '1')")
        finally:
            await bi.close()
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {name}"))
            await conn.execute(text(f"DROP ROLE {name}"))
