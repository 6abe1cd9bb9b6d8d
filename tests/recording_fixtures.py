"""Shared by the recording archive's tests: a fake Alohub's calls loaded into
the database, and settings that point the archive at that fake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from store.ingest import Delivery, ingest
from store.settings import Settings
from store.tenants import sync_tenants
from sync.fake import FakeState, build_state
from tests.conftest import make_settings

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
KEY = "media-test-key"
SINCE = datetime(2024, 1, 13, tzinfo=ICT)
UNTIL = datetime(2024, 1, 14, tzinfo=ICT)


def fake_state(calls: int = 40, media_size: int = 64 * 1024) -> FakeState:
    return build_state(calls=calls, seed=11, since=SINCE, until=UNTIL, api_key=KEY, media_size=media_size)


def archive_settings(base_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Tenant 'default' fetches from the fake at `base_url` with its API key."""
    s = make_settings(data_dir=data_dir, **overrides)
    default = replace(s.tenants[0], api_key=KEY, media_url=base_url, media_hosts=("127.0.0.1",))
    return replace(s, tenants=(default, *s.tenants[1:]))


def with_recordings(state: FakeState) -> list[dict[str, Any]]:
    return [r for r in state.calls.records if r.get("recording_url")]


async def load(engine: AsyncEngine, settings: Settings, records: Sequence[dict[str, Any]],
               source: str = "history", tenant: str = "default") -> None:
    """Store `records` as call-history deliveries (or webhook payloads) of `tenant`."""
    tenants = {t.tenant_id: t for t in settings.tenants}
    now = datetime.now(timezone.utc)
    deliveries = [Delivery(tenant, str(r["call_id"]), source, r, now) for r in records]  # type: ignore[arg-type]
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
        await ingest(conn, deliveries, tenants)
