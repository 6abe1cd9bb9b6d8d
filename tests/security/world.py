"""Two tenants with calls, raw events and a stored recording each (the same
call id in both), tokens of every role for each, the operator's token, and
the service's HTTP app on a real socket."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from store.ingest import Delivery, ingest
from store.recording_store import LocalRecordingStore
from store.settings import Settings
from store.tenants import sync_tenants
from store.tokens import ROLES, create_token
from tests.conftest import make_settings, serving

TENANTS = ("default", "acme")
SHARED_ID = "shared-call-1"
#: A signed media URL, as Alohub may send it: credentials and a query string.
SIGNED_URL = "https://media-user:media-pass@media.example/IPCCMedia/MP3Export.do?url=a.mp3&signature=SECRET-SIG"
AUDIO = b"ID3" + bytes(range(256)) * 8


@dataclass
class World:
    client: httpx.AsyncClient
    settings: Settings
    engine: AsyncEngine
    #: (tenant, role) -> Authorization headers; ("*", "admin") is the operator's token.
    tokens: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    token_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    #: tenant -> its own call ids (SHARED_ID included).
    calls: dict[str, list[str]] = field(default_factory=dict)

    def auth(self, tenant: str, role: str) -> dict[str, str]:
        return self.tokens[(tenant, role)]


def payload(call_id: str, tenant: str, n: int) -> dict[str, Any]:
    return {"call_id": call_id, "direction": "inbound", "caller_number": f"09{n:08d}", "hotline": "19001234",
            "starttime": f"2026-11-20 0{n % 10}:00:00", "endtime": f"2026-11-20 0{n % 10}:01:00",
            "hangup_by": "customer", "recording_url": SIGNED_URL, "note": f"{tenant} secret note"}


async def populate(engine: AsyncEngine, settings: Settings, calls_per_tenant: int = 6) -> dict[str, list[str]]:
    tenants = {t.tenant_id: t for t in settings.tenants}
    now = datetime.now(timezone.utc)
    store = LocalRecordingStore(settings.recordings_dir)
    out: dict[str, list[str]] = {}
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
        for tenant in TENANTS:
            ids = [SHARED_ID] + [f"{tenant}-call-{i}" for i in range(calls_per_tenant - 1)]
            out[tenant] = ids
            await ingest(conn, [Delivery(tenant, c, "webhook", payload(c, tenant, i), now) for i, c in enumerate(ids)],
                         tenants)
            for call_id in ids[:2]:  # a stored recording for the shared call and one more
                key = f"{tenant}/{call_id}.mp3"
                staging = store.ensure_staging() / f"{tenant}-{call_id}"
                staging.write_bytes(AUDIO)
                await store.put_from_file(key, staging)
                await conn.execute(text(
                    "INSERT INTO callstore.recordings (tenant_id, call_id, status, url, sha256, size, storage_key,"
                    " stored_at) VALUES (:t, :c, 'stored', :u, :h, :s, :k, now())"),
                    {"t": tenant, "c": call_id, "u": SIGNED_URL, "h": hashlib.sha256(AUDIO).hexdigest(),
                     "s": len(AUDIO), "k": key})
    return out


def two_tenant_settings(**overrides: object) -> Settings:
    s = make_settings(**overrides)
    assert tuple(t.tenant_id for t in s.tenants) == TENANTS
    return s


@dataclass
class Tokens:
    headers: dict[tuple[str, str], dict[str, str]]
    ids: dict[tuple[str, str], int]


async def make_tokens(engine: AsyncEngine) -> Tokens:
    headers: dict[tuple[str, str], dict[str, str]] = {}
    ids: dict[tuple[str, str], int] = {}
    async with engine.begin() as conn:
        for tenant in TENANTS:
            for role in ROLES:
                info, plain = await create_token(conn, f"{tenant}-{role}", role, tenant)
                headers[(tenant, role)] = {"Authorization": f"Bearer {plain}"}
                ids[(tenant, role)] = info.id
        info, plain = await create_token(conn, "operator", "admin", None)
        headers[("*", "admin")] = {"Authorization": f"Bearer {plain}"}
        ids[("*", "admin")] = info.id
    return Tokens(headers, ids)


async def world_of(engine: AsyncEngine, settings: Settings | None = None) -> AsyncIterator[World]:
    settings = settings or two_tenant_settings(data_dir=Path(tempfile.mkdtemp(prefix="callstore-sec-")))
    calls = await populate(engine, settings)
    tokens = await make_tokens(engine)
    app = create_app(settings, engine, build_extensions(settings, engine, "receiver", Metrics(), spool=False))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield World(client, settings, engine, tokens.headers, tokens.ids, calls)


def one_tenant(settings: Settings) -> Settings:
    return replace(settings, tenants=settings.tenants[:1])
