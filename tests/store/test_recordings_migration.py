"""Migration 0004 replaces callstore.recording_status; its downgrade restores 0001's."""

from __future__ import annotations

from sqlalchemy import text

from store import migrate
from store.engine import create_engine


async def test_downgrade_restores_the_foundation_function(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url, pool_size=1)
    probe = text("SELECT callstore.recording_status('default', 'c1', 'x.mp3')")
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO callstore.recordings (tenant_id, call_id, status) VALUES ('default', 'c1', 'expired')"))
            assert await conn.scalar(probe) == "expired"
        await migrate.downgrade(engine, "0001")
        async with engine.connect() as conn:
            assert await conn.scalar(probe) == "pending"
            assert await conn.scalar(text("SELECT to_regclass('callstore.recordings')")) is None
            assert await conn.scalar(text("SELECT to_regclass('analytics.recordings')")) is None
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.scalar(probe) == "pending"  # no archive row yet
    finally:
        await engine.dispose()
