"""Alembic environment: runs migrations on the connection callstore hands over,
or on DATABASE_URL when Alembic is run by hand."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from store.tables import SCHEMA, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url() -> None:
    from sqlalchemy import text

    from store.engine import create_engine
    from store.settings import load_settings

    settings = load_settings()
    if not settings.database_url:
        raise SystemExit("DATABASE_URL: set it to run alembic by hand (callstore migrate handles the embedded database)")
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA IF NOT EXISTS callstore"))
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url="postgresql://", target_metadata=metadata, version_table_schema=SCHEMA, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url())
