"""Alembic, driven from code: `callstore migrate`, `serve` and the tests."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import migrations
from store.errors import CallstoreError

log = logging.getLogger("callstore.migrate")

#: One lock id for migrations, so that replicas starting together migrate once.
_MIGRATE_LOCK = 0x63616C6C  # "call"
#: How long a replica waits for another replica's migrations.
LOCK_WAIT_SECONDS = 600.0


class MigrationLocked(CallstoreError):
    """The migration lock is held by a session that is not a callstore replica, or for too long."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revisions() -> frozenset[str]:
    """The heads of the migration tree (one, except while branches are open)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('callstore.alembic_version') IS NOT NULL"))
        if not exists:
            return frozenset()
        rows = await conn.execute(text("SELECT version_num FROM callstore.alembic_version"))
        return frozenset(r[0] for r in rows)


async def _run(engine: AsyncEngine, action: object) -> None:
    def go(sync_conn: Connection) -> None:
        action(alembic_config(sync_conn))  # type: ignore[operator]

    async with engine.begin() as conn:
        # All migrations run in one transaction (Postgres DDL is transactional)
        # under a lock, so N replicas starting at once migrate exactly once.
        await _lock(conn)
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS callstore"))
        await conn.run_sync(go)


# The lock is an advisory lock (it must exist before any table does), which
# any role may take; so it is only tried, never waited on blindly. The
# holder's session is looked up: a replica (same role) is waited for, up to
# LOCK_WAIT_SECONDS; any other role is not waited for at all.
_TRY = text("SELECT pg_try_advisory_xact_lock(:k)")
_HOLDER = text(
    """
    SELECT a.pid, a.usename, a.usename = current_user AS ours
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database
                                                                   WHERE datname = current_database())
      AND l.classid = 0 AND l.objid = :k AND l.objsubid = 1
    """
)


async def _lock(conn: AsyncConnection) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    said = False
    while not await conn.scalar(_TRY, {"k": _MIGRATE_LOCK}):
        holder = (await conn.execute(_HOLDER, {"k": _MIGRATE_LOCK})).first()
        if holder is not None and not holder.ours:
            raise MigrationLocked(
                f"the migration lock (advisory lock {_MIGRATE_LOCK}) is held by role {holder.usename!r} "
                f"(server pid {holder.pid}), which is not callstore's role: end that session "
                f"(SELECT pg_terminate_backend({holder.pid})) and start again")
        if time.monotonic() > deadline:
            raise MigrationLocked("another callstore process has been migrating the database for over "
                                  f"{LOCK_WAIT_SECONDS:.0f} s; start again when it is done")
        if not said and holder is not None:
            log.info("waiting for another callstore process (server pid %s) to finish migrating", holder.pid)
            said = True
        await asyncio.sleep(0.5)
