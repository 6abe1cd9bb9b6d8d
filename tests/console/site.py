"""A running console with demo data: today's calls from the fake Alohub (queues
included), two archived recordings, a few calls of the other tenant, and one
user per role (plus one of the other tenant)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from reports.rollups import refresh_rollups
from store.recording_store import LocalRecordingStore
from store.users import create_user
from sync.fake import build_state, running_fake
from sync.queues import store_catalogue
from sync.recordings import FetchOptions, Fetcher
from tests.conftest import serving
from tests.recording_fixtures import KEY, archive_settings, load, with_recordings

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
PASSWORD = "correct horse battery"
USERS = {"lan": ("default", "compliance"), "minh": ("default", "reader"), "root": ("default", "admin"),
         "paul": ("acme", "compliance")}


@dataclass
class Site:
    url: str
    records: list[dict[str, Any]]
    played: str  # a call with a stored recording
    other_tenant_call: str


@contextlib.asynccontextmanager
async def running_site(engine: AsyncEngine, data_dir: Path, calls: int = 60) -> AsyncIterator[Site]:
    now = datetime.now(ICT)
    since = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now - since < timedelta(hours=1):  # just after midnight: yesterday's calls are today's enough
        since -= timedelta(hours=1)
    state = build_state(calls=calls, seed=7, since=since, until=now - timedelta(minutes=1), api_key=KEY,
                        media_size=48 * 1024)
    records = list(state.calls.records)
    recorded = with_recordings(state)[:2]
    with running_fake(state) as base:
        settings = archive_settings(base, data_dir)
        async with engine.begin() as conn:
            from store.tenants import sync_tenants

            await sync_tenants(conn, settings.tenants)
            await store_catalogue(conn, settings.tenants[0], [q.to_record() for q in state.queues],
                                  datetime.now(timezone.utc))
        await load(engine, settings, records)
        await load(engine, settings, recorded)
        store = LocalRecordingStore(settings.recordings_dir)
        await Fetcher(engine, settings, store, FetchOptions(rate=0)).run()
    other = {**records[0], "call_id": "acme-only-call-1"}
    await load(engine, settings, [other], tenant="acme")
    async with engine.begin() as conn:
        for name, (tenant, role) in USERS.items():
            await create_user(conn, tenant, name, role, PASSWORD)
        await refresh_rollups(conn)
        # One alert firing on Support since two hours ago (as the alerts job would have written it).
        await conn.execute(text("""
            INSERT INTO callstore.alerts (tenant_id, queue_id, fired_at, window_minutes, offered, answered, abandoned,
                short_abandoned, unanswered_other, abandon_rate, peak_abandon_rate, rule)
            VALUES ('default', 1001227, now() - interval '2 hours', 15, 12, 6, 6, 0, 0, 0.5, 0.5, '{}')"""))
    app = create_app(settings, engine, build_extensions(settings, engine, "receiver", Metrics(), spool=False))
    async with serving(app) as url:
        yield Site(url, records, recorded[0]["call_id"], other["call_id"])
