from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from store import migrate
from store.engine import create_engine
from store.tables import SCHEMA, metadata


async def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url, pool_size=1)
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revisions(engine) == migrate.head_revisions()
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revisions(engine) == frozenset()
        async with engine.connect() as conn:
            left = await conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('callstore', 'analytics') AND table_name <> 'alembic_version'")
            )
        assert left == 0
        await migrate.upgrade(engine)
        assert await migrate.current_revisions(engine) == migrate.head_revisions()
    finally:
        await engine.dispose()


async def test_tables_module_matches_migrations(engine) -> None:  # type: ignore[no-untyped-def]
    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "version_table_schema": SCHEMA,
                "include_name": lambda name, type_, parent: type_ != "schema" or name in (None, SCHEMA),
            },
        )
        return [d for d in compare_metadata(ctx, metadata) if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
