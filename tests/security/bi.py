"""What the tests of the BI role share: the role, a connection as it, every table behind the views filled."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.bi_role import ensure_bi_role
from reports.agent_rollups import refresh_agent_rollups
from reports.campaigns import refresh_campaigns
from reports.rollups import refresh_rollups
from store.ingest import Delivery, ingest
from store.settings import Settings
from store.tenants import sync_tenants
from sync.campaigns import CampaignData, Contact, ContactList, add_campaign, store_campaign
from tests.reports.test_rollups import QUEUES, payload

PASSWORD = "bi-pa$$'word"


@dataclass(frozen=True)
class BiRole:
    name: str
    url: str


def as_role(url: str, role: str, password: str, database: str | None = None) -> str:
    p = urlsplit(url)
    host = p.netloc.rsplit("@", 1)[-1]
    path = p.path if database is None else "/" + database
    return urlunsplit(("postgresql", f"{role}:{password.replace('$', '%24').replace(chr(39), '%27')}@{host}",
                       path, p.query, ""))


@contextlib.asynccontextmanager
async def bi_role(engine: AsyncEngine, db_url: str, **limits: object) -> AsyncIterator[BiRole]:
    """A role made as `callstore report bi-role` makes it; dropped at the end (roles are server-wide)."""
    name = f"bi_{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await ensure_bi_role(conn, name, PASSWORD, **limits)  # type: ignore[arg-type]
    try:
        yield BiRole(name, as_role(db_url, name, PASSWORD))
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {name}"))
            await conn.execute(text(f"DROP ROLE {name}"))


async def connect(role: BiRole) -> asyncpg.Connection:
    return await asyncpg.connect(role.url)


async def fill_every_table(engine: AsyncEngine, settings: Settings) -> None:
    """Rows in every table an analytics view reads, for both tenants."""
    now = datetime.now(timezone.utc)
    started = datetime(2026, 11, 20, 9, 0, 10, tzinfo=timezone.utc)
    tenants = {t.tenant_id: t for t in settings.tenants}
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
        for tenant in tenants:
            await conn.execute(text(
                "INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number_canonical) "
                "VALUES (:t, 101, 'Sales', :h)"), {"t": tenant, "h": QUEUES[101]})
            await conn.execute(text(
                "INSERT INTO callstore.queue_thresholds (tenant_id, queue_id, sla_seconds, short_abandon_seconds) "
                "VALUES (:t, 101, 15, 4)"), {"t": tenant})
        deliveries = []
        for tenant in tenants:
            for i, kind in enumerate(("answered", "abandoned", "answered")):
                p = payload(f"{tenant}-c{i}", started, kind=kind, wait=10 + i, talk=60, hotline=QUEUES[101])
                p["recording_url"] = f"https://media.example.com/{tenant}/c{i}.mp3?sig=secret"
                deliveries.append(Delivery(tenant, f"{tenant}-c{i}", "webhook", p, now))
        await ingest(conn, deliveries, tenants)
        for tenant in tenants:
            await conn.execute(text(
                "INSERT INTO callstore.recordings (tenant_id, call_id, status, call_started_at, url, sha256, size, "
                "storage_key, stored_at) VALUES (:t, :c, 'stored', :s, 'https://media.example.com/x.mp3', :h, 10, "
                "'k', now())"), {"t": tenant, "c": f"{tenant}-c0", "s": started, "h": "ab" * 32})
            await conn.execute(text(
                "INSERT INTO callstore.recording_access (tenant_id, call_id, method, status_code, bytes_planned, "
                "bytes_sent, complete) VALUES (:t, :c, 'GET', 200, 10, 10, true)"), {"t": tenant, "c": f"{tenant}-c0"})
            alert_id = await conn.scalar(text(
                "INSERT INTO callstore.alerts (tenant_id, queue_id, fired_at, window_minutes, offered, answered, "
                "abandoned, short_abandoned, unanswered_other, rule) VALUES (:t, 101, now(), 15, 10, 5, 5, 0, 0, "
                "'{\"floor_rate\": 0.2}') RETURNING id"), {"t": tenant})
            await conn.execute(text(
                "INSERT INTO callstore.alert_outbox (tenant_id, alert_id, kind, notifier, message_id, payload) "
                "VALUES (:t, :a, 'firing', 'webhook', :m, '{}')"), {"t": tenant, "a": alert_id, "m": f"m{alert_id}"})
            run_id = await conn.scalar(text(
                "INSERT INTO callstore.ingest_runs (tenant_id, kind, source, window_start, window_end, covered_until) "
                "VALUES (:t, 'manual', 'history', now() - interval '1 day', now(), now()) RETURNING run_id"),
                {"t": tenant})
            await conn.execute(text(
                "INSERT INTO callstore.ingest_ledger (run_id, tenant_id, day, records) VALUES (:r, :t, current_date, 3)"),
                {"r": run_id, "t": tenant})
            await conn.execute(text(
                "INSERT INTO callstore.dead_letters (tenant_id, reason, body, body_bytes) "
                "VALUES (:t, 'not_json', '\\x00', 1)"), {"t": tenant})
        for tenant in tenants:
            # A campaign whose contact was called (an attempt) and processed, and one contact removed.
            await add_campaign(conn, tenant, 7, "Renewals")
            data = CampaignData(7, [ContactList(1, "L", 2)], [
                Contact(70, 1, None, "0912345678", "+84912345678", None, 2, "answered")])
            await store_campaign(conn, tenants[tenant], CampaignData(7, data.lists, [
                *data.contacts, Contact(71, 1, None, "0912345679", "+84912345679", None, 0, None)]), started)
            await store_campaign(conn, tenants[tenant], data, now)
        await ingest(conn, [Delivery(tenant, f"{tenant}-o1", "webhook", {
            "call_id": f"{tenant}-o1", "direction": "outbound", "caller_number": "0912345678",
            "starttime": "2026-11-20 16:00:00", "answertime": "2026-11-20 16:00:05", "endtime": "2026-11-20 16:01:05"},
            now) for tenant in tenants], tenants)
    async with engine.begin() as conn:
        await refresh_rollups(conn)
        await refresh_agent_rollups(conn)
        await refresh_campaigns(conn)


# Every table behind every view of schema analytics, through views on views.
TABLES_BEHIND_VIEWS = text(
    """
    WITH RECURSIVE deps(view_name, ref) AS (
        SELECT v.oid::regclass::text, d.refobjid
        FROM pg_class v
        JOIN pg_rewrite r ON r.ev_class = v.oid
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
        WHERE v.relnamespace = 'analytics'::regnamespace AND v.relkind IN ('v', 'm')
        UNION
        SELECT deps.view_name, d.refobjid
        FROM deps
        JOIN pg_rewrite r ON r.ev_class = deps.ref
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> deps.ref
    )
    SELECT DISTINCT deps.view_name, c.oid::regclass::text AS table_name
    FROM deps JOIN pg_class c ON c.oid = deps.ref
    WHERE c.relkind IN ('r', 'p')
    ORDER BY 1, 2
    """
)
