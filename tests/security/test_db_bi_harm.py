"""The read-only BI role cannot stop the service's work nor write anything.

Each test is an attack that worked before: the role took the advisory locks of
the rollup refresh, the jobs, the alert evaluation, the threshold compilation
and the migrations (reports hung holding pool connections, jobs were skipped);
it turned `default_transaction_read_only` off and created temporary tables and
large objects, executed callstore's functions, connected to other databases.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_jobs
from callstore.scheduler import Scheduler
from reports.alerts.job import run_alerts
from reports.queries import queue_report
from reports.thresholds import set_thresholds
from store import migrate
from store.ingest import Delivery, ingest
from store.privileges import restrict_public
from store.settings import Settings
from tests.reports.test_rollups import QUEUES, payload
from tests.security.bi import PASSWORD, as_role, bi_role, connect, fill_every_table

#: A hang guard, not a measurement: each step returns in well under a second.
GUARD_S = 30


def _key(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big", signed=True)


# Every advisory lock the service used to wait on or skip for.
OLD_LOCKS = [
    *[(0x6A6F62, _key(name)) for name in ("rollups", "agent-rollups", "alerts", "recordings", "backfill", "sync-queues")],
    (1919905900, 1), (1919905900, 2), (1919905900, 3),
    *[(0x616C7274, _key(tenant)) for tenant in ("default", "acme")],
]


async def test_advisory_locks_taken_by_the_bi_role_stall_nothing(engine: AsyncEngine, db_url: str,
                                                                 settings: Settings) -> None:
    await fill_every_table(engine, settings)
    async with bi_role(engine, db_url) as role:
        bi = await connect(role)
        try:
            # The attack: session-level locks inside a read-only transaction, held open.
            await bi.execute("BEGIN READ ONLY")
            for a, b in OLD_LOCKS:
                assert await bi.fetchval("SELECT pg_try_advisory_lock($1, $2)", a, b)
            assert await bi.fetchval("SELECT pg_try_advisory_lock($1)", 0x63616C6C)

            # A new call, then the scheduled rollups job: it runs (not skipped) and the report shows it.
            new = payload("late", datetime(2026, 11, 20, 9, 5, tzinfo=timezone.utc), kind="answered", wait=5,
                          talk=30, hotline=QUEUES[101])
            async with engine.begin() as conn:
                await ingest(conn, [Delivery("default", "late", "webhook", new, datetime.now(timezone.utc))],
                             {t.tenant_id: t for t in settings.tenants})
            # Every job these settings enable runs (none skipped, none waiting), the rollups among them.
            outcomes: list[tuple[str, str]] = []
            scheduler = Scheduler(engine, settings, build_jobs(settings), on_run=lambda n, o: outcomes.append((n, o)))
            assert {"rollups", "alerts"} <= {j.name for j in scheduler.jobs}
            for job in scheduler.jobs:
                await asyncio.wait_for(scheduler._run(job), GUARD_S)
            assert outcomes == [(j.name, "ok") for j in scheduler.jobs]
            params = {"from": "2026-11-20", "to": "2026-11-21", "interval": "day", "tenant": "default",
                      "queue": "101", "format": "json"}
            _, body = await asyncio.wait_for(queue_report(engine, settings, params), GUARD_S)
            assert json.loads(body)["rows"][0]["offered"] == 4

            # The alert evaluation and the threshold compilation run too.
            await asyncio.wait_for(run_alerts(engine, settings), GUARD_S)
            async with engine.begin() as conn:
                await asyncio.wait_for(set_thresholds(conn, "default", 101, sla_seconds=30, short_abandon_seconds=3),
                                       GUARD_S)

            # Migrations do not wait on a lock held by another role: they say who holds it.
            with pytest.raises(migrate.MigrationLocked, match=role.name):
                await asyncio.wait_for(migrate.upgrade(engine), GUARD_S)

            # Nor can the role take the locks the service uses now, even read-write: a row lock needs UPDATE.
            await bi.execute("COMMIT")
            for sql in ("SELECT * FROM callstore.locks FOR UPDATE", "SELECT * FROM callstore.job_leases FOR UPDATE",
                        "SELECT * FROM analytics.calls FOR SHARE", "LOCK TABLE callstore.locks"):
                await bi.execute("BEGIN READ WRITE")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await bi.execute(sql)
                await bi.execute("ROLLBACK")
        finally:
            await bi.close()
    # Its session gone, migrations run again.
    await migrate.upgrade(engine)


async def test_the_bi_role_cannot_write_even_read_write(engine: AsyncEngine, db_url: str) -> None:
    su = await asyncpg.connect(db_url)  # the embedded server's own restrictions, as `serve` applies them
    try:
        await restrict_public(su)
    finally:
        await su.close()
    async with bi_role(engine, db_url) as role:
        bi = await connect(role)
        try:
            await bi.execute("SET default_transaction_read_only = off")
            attempts = [
                "CREATE TEMP TABLE t (i int)",
                "SELECT lo_create(0)",
                "SELECT lo_from_bytea(0, '\\x00')",
                "CREATE TABLE analytics.t (i int)",
                "CREATE TABLE public.t (i int)",
                "INSERT INTO analytics.dead_letters (reason, body_bytes) VALUES ('x', 1)",
                "DELETE FROM analytics.recordings",
                "SELECT callstore.compile_thresholds()",
                "SELECT callstore.attribute_queue('default', 'inbound', '19001001')",
                "SELECT callstore.bucket_15m(now(), 'UTC')",
                "SELECT 1 FROM callstore.calls",
                "SELECT 1 FROM callstore.api_tokens",
            ]
            for sql in attempts:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await bi.execute(sql)
            # No write privilege anywhere, no schema to create in (pg_settings is
            # PostgreSQL's UPDATE-able view of the session's own SET: every role has it).
            writable = await bi.fetchval(
                "SELECT array_agg(c.oid::regclass::text) FROM pg_class c WHERE c.relkind IN ('r', 'v', 'p', 'm', 'f') "
                "AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') AND c.oid <> 'pg_settings'::regclass")
            creatable = await bi.fetchval(
                "SELECT array_agg(nspname) FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE')")
            assert (writable, creatable) == (None, None)
        finally:
            await bi.close()
        # Other databases of the server refuse it.
        for other in ("postgres", "template1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await asyncpg.connect(as_role(db_url, role.name, PASSWORD, database=other))


async def test_limits_and_time_zone(engine: AsyncEngine, db_url: str, settings: Settings) -> None:
    async with bi_role(engine, db_url, timezone="Asia/Ho_Chi_Minh") as role:
        bi = await connect(role)
        try:
            settings_seen = await bi.fetchrow(
                "SELECT current_setting('statement_timeout') AS st, current_setting('timezone') AS tz, "
                "current_setting('idle_in_transaction_session_timeout') AS idle, "
                "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS connlimit")
            assert dict(settings_seen) == {"st": "1min", "tz": "Asia/Ho_Chi_Minh", "idle": "1min", "connlimit": 10}
            with pytest.raises(asyncpg.QueryCanceledError):
                await bi.execute("SET statement_timeout = '100ms'; SELECT pg_sleep(5)")
        finally:
            await bi.close()
    async with bi_role(engine, db_url, statement_timeout_s=5, connection_limit=1) as role:
        first = await connect(role)
        try:
            assert await first.fetchval("SHOW statement_timeout") == "5s"
            with pytest.raises(asyncpg.TooManyConnectionsError):
                await connect(role)
        finally:
            await first.close()


async def test_a_report_never_waits_for_a_refresh(engine: AsyncEngine, settings: Settings) -> None:
    """Before, every report refreshed the rollups under one global lock: reports
    queued behind each other and behind the job. Now a refresh in progress
    (here: its lock held and not released) does not delay a report."""
    from reports.rollups import LOCK_NAME
    from store.locks import hold

    await fill_every_table(engine, settings)
    params = {"from": "2026-11-20", "to": "2026-11-21", "interval": "day", "tenant": "default", "format": "json"}
    async with engine.connect() as refresh:
        await hold(refresh, LOCK_NAME)
        _, body = await asyncio.wait_for(queue_report(engine, settings, params), GUARD_S)
        assert json.loads(body)["rows"][0]["offered"] == 3
        await refresh.rollback()
