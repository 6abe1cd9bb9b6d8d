"""The spool end to end: the database goes away (a proxy in front of the real
Postgres refuses and resets connections), the webhook keeps answering 200,
and everything lands exactly once when it is back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from receiver.spool import Spool
from receiver.drain import Drainer
from store.engine import create_engine
from store.ingest import Delivery, ingest
from store.settings import Settings
from store.tenants import sync_tenants
from tests.chaos.proxy import TcpProxy
from tests import conftest
from tests.conftest import WEBHOOK_KEY, serving
from tests.receiver.test_webhook import SAMPLE, rows


SAMPLE_TIME = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
async def proxy(db_url: str) -> AsyncIterator[TcpProxy]:
    p = TcpProxy.for_url(db_url)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def proxied(proxy: TcpProxy, db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that reaches the database only through the proxy."""
    eng = create_engine(proxy.url(db_url), pool_size=4)
    yield eng
    await eng.dispose()


def spool_settings(tmp_path: Path, **overrides: object) -> Settings:
    return conftest.test_settings(data_dir=tmp_path, **overrides)


@pytest.fixture
async def app_url(proxied: AsyncEngine, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[str]:
    settings = spool_settings(tmp_path)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    metrics = Metrics()
    app = create_app(settings, proxied, build_extensions(settings, proxied, "receiver", metrics), metrics)
    async with serving(app) as url:
        yield url


def event(i: int) -> bytes:
    return json.dumps({**SAMPLE, "call_id": f"spooled-{i}"}).encode()


async def post_all(url: str, bodies: list[bytes]) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(body: bytes) -> int:
            r = await client.post(f"{url}/webhooks/alohub", content=body, headers={"Authorization": WEBHOOK_KEY})
            return r.status_code
        return list(await asyncio.gather(*[one(b) for b in bodies]))


async def spool_depth(url: str) -> float:
    async with httpx.AsyncClient() as client:
        ready = (await client.get(f"{url}/readyz")).json()
    return float(ready["spool"]["depth"])


async def wait_drained(url: str, seconds: float = 10) -> None:
    """The spool is drained within 10 seconds of Postgres being reachable again."""
    for _ in range(int(seconds * 10)):
        if await spool_depth(url) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the spool was not drained within 10 s")


async def test_outage_events_are_spooled_then_drained_once(app_url: str, proxy: TcpProxy, engine: AsyncEngine) -> None:
    assert await post_all(app_url, [event(0)]) == [200]  # the pool holds a live connection now
    await proxy.cut()

    bodies = [event(i) for i in range(1, 41)] + [event(1), event(2)]  # two duplicates
    assert set(await post_all(app_url, bodies)) == {200}
    assert await post_all(app_url, [b"{broken"]) == [400]  # a dead letter, spooled too
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{app_url}/readyz")
        metrics = (await client.get(f"{app_url}/metrics")).text
    assert ready.status_code == 503 and ready.json()["spool"]["depth"] == 43
    assert "callstore_spool_depth 43.0" in metrics
    assert await rows(engine, "SELECT 1 FROM callstore.raw_events") and len(await rows(engine, "SELECT 1 FROM callstore.calls")) == 1

    await proxy.start()
    await wait_drained(app_url)
    calls = await rows(engine, "SELECT call_id FROM callstore.calls")
    assert sorted(c["call_id"] for c in calls) == sorted(f"spooled-{i}" for i in range(41))
    raw = {r["body_sha256"]: r["deliveries"] for r in await rows(engine, "SELECT body_sha256, deliveries FROM callstore.raw_events")}
    assert raw == {hashlib.sha256(event(i)).digest(): 2 if i in (1, 2) else 1 for i in range(41)}
    [dead] = await rows(engine, "SELECT reason, body FROM callstore.dead_letters")
    assert dead == {"reason": "invalid_json", "body": b"{broken"}
    # The progress row goes after the file (and after the depth reached 0).
    for _ in range(50):
        if not await rows(engine, "SELECT 1 FROM callstore.spool_progress"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the drained segment's progress row was not removed")
    assert (await post_all(app_url, [event(99)])) == [200]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{app_url}/readyz")).status_code == 200


async def test_database_down_at_startup(proxy: TcpProxy, proxied: AsyncEngine, engine: AsyncEngine, tmp_path: Path) -> None:
    await proxy.cut()
    settings = spool_settings(tmp_path)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    metrics = Metrics()
    app = create_app(settings, proxied, build_extensions(settings, proxied, "receiver", metrics), metrics)
    async with serving(app) as url:
        assert await post_all(url, [event(i) for i in range(5)]) == [200] * 5
        assert await spool_depth(url) == 5
        await proxy.start()
        await wait_drained(url)
    assert len(await rows(engine, "SELECT 1 FROM callstore.calls")) == 5


async def test_connections_broken_by_a_restart_reconnect_at_once(app_url: str, proxy: TcpProxy, engine: AsyncEngine) -> None:
    assert await post_all(app_url, [event(i) for i in range(10)]) == [200] * 10  # several pooled connections
    # Postgres restarts: every open connection is reset, new ones are accepted.
    await proxy.cut()
    await proxy.start()
    assert await post_all(app_url, [event(10)]) == [200]
    # Written straight to the database on a fresh connection, not spooled.
    assert await spool_depth(app_url) == 0
    assert len(await rows(engine, "SELECT 1 FROM callstore.calls")) == 11


async def test_spool_full_is_503_with_retry_after(proxy: TcpProxy, proxied: AsyncEngine, engine: AsyncEngine, tmp_path: Path) -> None:
    settings = spool_settings(tmp_path, spool_max_bytes=4096)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    metrics = Metrics()
    app = create_app(settings, proxied, build_extensions(settings, proxied, "receiver", metrics), metrics)
    async with serving(app) as url:
        await proxy.cut()
        statuses = [s for i in range(20) for s in await post_all(url, [event(i)])]
        assert 200 in statuses and statuses[-1] == 503
        accepted = statuses.count(200)
        assert statuses == [200] * accepted + [503] * (20 - accepted)
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{url}/webhooks/alohub", content=event(50), headers={"Authorization": WEBHOOK_KEY})
            assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"] == "unavailable"
            assert "spool is full" in r.json()["detail"]
        await proxy.start()
        await wait_drained(url)
    assert len(await rows(engine, "SELECT 1 FROM callstore.calls")) == accepted


async def test_crash_after_commit_before_delete_ingests_nothing_twice(engine: AsyncEngine, tmp_path: Path) -> None:
    """The drainer commits progress with the events: a segment found again after
    a crash is skipped as far as it was committed, and the rest is ingested."""
    settings = conftest.test_settings()
    tenants = {t.tenant_id: t for t in settings.tenants}
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    root = tmp_path / "spool"
    dead = Spool(root, 10_000_000)
    dead.open()
    items = [Delivery("default", f"c{i}", "webhook", {"call_id": f"c{i}"}, SAMPLE_TIME, bytes([i]) * 32) for i in range(5)]
    await dead.append(items)
    await dead.seal()
    [(_, segment)] = dead.sealed_segments()
    # State at the crash: the first three records committed with their progress row.
    async with engine.begin() as conn:
        await ingest(conn, items[:3], tenants)
        await conn.execute(text("INSERT INTO callstore.spool_progress VALUES (:s, 3)"), {"s": segment.id})
    assert dead.own is not None
    os.close(dead.own.lock_fd)  # the process is gone

    adopter = Spool(root, 10_000_000)
    drainer = Drainer(adopter, engine, tenants, poll_seconds=0.05, adopt_every=0)
    async with drainer.running():
        for _ in range(100):
            if drainer.drained == 2 and not list(root.glob("*/*.seg")):
                break
            await asyncio.sleep(0.05)
    assert drainer.drained == 2
    raw = await rows(engine, "SELECT call_id, deliveries FROM callstore.raw_events ORDER BY call_id")
    assert raw == [{"call_id": f"c{i}", "deliveries": 1} for i in range(5)]
    assert await rows(engine, "SELECT 1 FROM callstore.spool_progress") == []
    assert list(root.iterdir()) == []  # the adopted directory is gone too


async def test_a_database_without_its_schema_yet_spools_instead_of_refusing(
        empty_db_url: str, tmp_path: Path) -> None:
    """A receiver started on a fresh database during an outage migrates in the
    background once it answers; webhooks in between go to the spool (not 500),
    and are drained once the schema is there."""
    from store import migrate

    settings = spool_settings(tmp_path)
    eng = create_engine(empty_db_url, pool_size=2)
    try:
        metrics = Metrics()
        app = create_app(settings, eng, build_extensions(settings, eng, "receiver", metrics), metrics)
        async with serving(app) as url:
            assert await post_all(url, [event(i) for i in range(3)]) == [200] * 3
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{url}/readyz")).json()["spool"]["depth"] == 3
            await migrate.upgrade(eng)
            async with eng.begin() as conn:
                await sync_tenants(conn, settings.tenants)
            for _ in range(200):  # bounded: 20 s (the drainer backs off after errors)
                if len(await rows(eng, "SELECT 1 FROM callstore.calls WHERE call_id LIKE 'spooled-%'")) == 3:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the spooled events were not drained once the schema existed")
    finally:
        await eng.dispose()
