"""A running console with demo data: today's calls from the fake Alohub (queues
included), two archived recordings, a few calls of the other tenant, and one
user per role (plus one of the other tenant). With `campaigns`, that many
outbound campaigns of the fake, dialled by its calls over the last seven days
and synced from it, and one campaign of the other tenant."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from reports.campaigns import refresh_campaigns
from reports.rollups import refresh_rollups
from store.recording_store import LocalRecordingStore
from store.users import create_user
from sync.campaigns import add_campaign, sync_tenant_campaigns
from sync.client import AlohubClient, new_http_client
from sync.fake import build_state, running_fake
from sync.fake.campaigns import dial, generate_campaigns
from sync.fake.index import CallIndex
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
    #: campaign id -> phone numbers of its contacts (as the fake serves them)
    campaign_phones: dict[int, list[str]]


OTHER_TENANT_CAMPAIGN = 2042


@contextlib.asynccontextmanager
async def running_site(engine: AsyncEngine, data_dir: Path, calls: int = 60,
                       campaigns: int = 0) -> AsyncIterator[Site]:
    now = datetime.now(ICT)
    since = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now - since < timedelta(hours=1):  # just after midnight: yesterday's calls are today's enough
        since -= timedelta(hours=1)
    state = build_state(calls=calls, seed=7, since=since, until=now - timedelta(minutes=1), api_key=KEY,
                        media_size=48 * 1024)
    if campaigns:
        rng = random.Random(8)
        phones = [f"09{n:08d}" for n in rng.sample(range(10**8), campaigns * 30)]
        state.campaigns = generate_campaigns(rng, phones, campaigns=campaigns)
        dialled = dial(state.campaigns, rng, since - timedelta(days=6), now - timedelta(minutes=1), state.tz)
        state.calls = state.calls.extended(CallIndex.from_calls(dialled, state.tz).records)
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
        if campaigns:
            async with engine.begin() as conn:
                for cid, camp in state.campaigns.campaigns.items():
                    await add_campaign(conn, "default", cid, camp.name)
            async with new_http_client() as http:
                client = AlohubClient(http, replace(settings.tenants[0], xapi_url=base))
                assert not (await sync_tenant_campaigns(engine, client)).failed
    other = {**next(r for r in records if "-C" not in r["call_id"]), "call_id": "acme-only-call-1"}
    await load(engine, settings, [other], tenant="acme")
    async with engine.begin() as conn:
        for name, (tenant, role) in USERS.items():
            await create_user(conn, tenant, name, role, PASSWORD)
        await refresh_rollups(conn)
        if campaigns:
            await add_campaign(conn, "acme", OTHER_TENANT_CAMPAIGN, "Acme outbound")
            await refresh_campaigns(conn)
        # One alert firing on Support since two hours ago (as the alerts job would have written it).
        await conn.execute(text("""
            INSERT INTO callstore.alerts (tenant_id, queue_id, fired_at, window_minutes, offered, answered, abandoned,
                short_abandoned, unanswered_other, abandon_rate, peak_abandon_rate, rule)
            VALUES ('default', 1001227, now() - interval '2 hours', 15, 12, 6, 6, 0, 0, 0.5, 0.5, '{}')"""))
    app = create_app(settings, engine, build_extensions(settings, engine, "receiver", Metrics(), spool=False))
    async with serving(app) as url:
        yield Site(url, records, recorded[0]["call_id"], other["call_id"],
                   {cid: [c.phone_number for c in camp.contacts()] for cid, camp in state.campaigns.campaigns.items()})
