"""Migration 0014 (tenant-first keys) keeps every row, upgrading a database
filled by the previous version and downgrading it again."""

from __future__ import annotations

import importlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store import migrate
from store.engine import create_engine

TENANT_KEYS = importlib.import_module("migrations.versions.0014_tenant_keys")

_FILL = [
    "INSERT INTO callstore.dead_letters (tenant_id, reason, body, body_bytes) VALUES "
    "(NULL, 'too_large', '\\x01', 1), ('acme', 'invalid_json', '\\x02', 1)",
    "INSERT INTO callstore.recording_access (tenant_id, call_id, method, status_code, bytes_planned, bytes_sent, "
    "complete) VALUES (NULL, 'c-1', 'GET', 401, 0, 0, true), ('acme', 'c-2', 'GET', 200, 10, 10, true)",
    "INSERT INTO callstore.alerts (tenant_id, queue_id, fired_at, window_minutes, offered, answered, abandoned, "
    "short_abandoned, unanswered_other, rule) VALUES ('acme', 7, now(), 15, 10, 5, 5, 0, 0, '{}')",
    "INSERT INTO callstore.alert_outbox (tenant_id, alert_id, kind, notifier, message_id, payload) "
    "SELECT 'acme', id, 'firing', 'webhook', 'm1', '{}' FROM callstore.alerts",
    "INSERT INTO callstore.alert_delivery_failures (outbox_id, notifier, attempt, error) "
    "SELECT id, 'webhook', 1, 'refused' FROM callstore.alert_outbox",
    # A failure whose outbox row is gone.
    "INSERT INTO callstore.alert_delivery_failures (outbox_id, notifier, attempt, error) "
    "VALUES (999, 'slack', 1, 'timeout')",
    "INSERT INTO callstore.ingest_runs (tenant_id, kind, source, window_start, window_end, covered_until) "
    "VALUES ('acme', 'manual', 'history', now() - interval '1 day', now(), now())",
    "INSERT INTO callstore.ingest_ledger (run_id, tenant_id, day, records) "
    "SELECT run_id, tenant_id, current_date, 3 FROM callstore.ingest_runs",
]


async def _state(conn: AsyncConnection) -> dict[str, list[tuple[object, ...]]]:
    queries = {
        "dead_letters": "SELECT tenant_id, reason FROM analytics.dead_letters ORDER BY id",
        "recording_access": "SELECT tenant_id, call_id, status_code FROM analytics.recording_access ORDER BY id",
        "alerts": "SELECT tenant_id, queue_id, fire_notification FROM analytics.alerts",
        "failures": "SELECT outbox_id, notifier, error FROM callstore.alert_delivery_failures ORDER BY id",
        "ledger": "SELECT tenant_id, run_kind, history_records FROM analytics.ingest_ledger",
    }
    return {name: [tuple(r) for r in await conn.execute(text(sql))] for name, sql in queries.items()}


async def test_rows_survive_upgrade_and_downgrade(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url, pool_size=1)
    try:
        await migrate.upgrade(engine, TENANT_KEYS.down_revision)
        async with engine.begin() as conn:
            for statement in _FILL:
                await conn.execute(text(statement))
            before = await _state(conn)
        assert before["dead_letters"] == [(None, "too_large"), ("acme", "invalid_json")]

        await migrate.upgrade(engine, TENANT_KEYS.revision)
        async with engine.connect() as conn:
            # The views show what they showed; the rows without a tenant are stored under ''.
            assert await _state(conn) == before
            stored = (await conn.execute(text(
                "SELECT tenant_id FROM callstore.dead_letters UNION ALL SELECT tenant_id FROM callstore.recording_access"
                " ORDER BY 1"))).scalars().all()
            assert stored == ["", "", "acme", "acme"]
            failures = (await conn.execute(text(
                "SELECT tenant_id, error FROM callstore.alert_delivery_failures ORDER BY id"))).all()
            assert [tuple(f) for f in failures] == [("acme", "refused"), ("", "timeout")]

        await migrate.downgrade(engine, TENANT_KEYS.down_revision)
        async with engine.connect() as conn:
            assert await _state(conn) == before
            nulls = await conn.scalar(text("SELECT count(*) FROM callstore.dead_letters WHERE tenant_id IS NULL"))
            assert nulls == 1
    finally:
        await engine.dispose()
