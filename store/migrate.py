"""Alembic, driven from code: `callstore migrate`, `serve` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

#: One lock id for migrations, so that replicas starting together migrate once.
_MIGRATE_LOCK = 0x63616C6C  # "call"


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
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS callstore"))
        await conn.run_sync(go)
