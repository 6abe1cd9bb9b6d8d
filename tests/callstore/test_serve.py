"""`callstore serve` as operators run it: real processes, real signals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.chaos.service import ServiceProcess
from tests.conftest import WEBHOOK_KEY
from tests.receiver.test_webhook import SAMPLE, rows


def env_for(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(data_dir), "ALOHUB_WEBHOOK_KEYS": WEBHOOK_KEY, **extra}


def body(i: int) -> bytes:
    return json.dumps({**SAMPLE, "call_id": f"serve-{i}"}).encode()


async def send(client: httpx.AsyncClient, url: str, payload: bytes) -> int | None:
    """The status, or None when the connection failed (nothing acknowledged)."""
    try:
        r = await client.post(f"{url}/webhooks/alohub", content=payload, headers={"Authorization": WEBHOOK_KEY})
    except httpx.TransportError:
        return None
    return r.status_code


@pytest.fixture
async def services() -> AsyncIterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


async def test_sigterm_finishes_in_flight_requests_and_exits_0(
    db_url: str, engine: AsyncEngine, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    svc = ServiceProcess(env_for(db_url, tmp_path), tmp_path)
    services.append(svc)
    await svc.start()
    acked: list[int] = []
    sent = 0
    term: asyncio.Task[int] | None = None

    async def worker(client: httpx.AsyncClient, first: int) -> None:
        nonlocal sent, term
        for i in range(first, 2000, 16):
            if term is not None and term.done():
                return
            sent += 1
            status = await send(client, svc.url, body(i))
            if status == 200:
                acked.append(i)
            if len(acked) >= 150 and term is None:
                term = asyncio.create_task(svc.terminate())

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=16)) as client:
        await asyncio.gather(*[worker(client, k) for k in range(16)])
    assert term is not None
    assert await term == 0, svc.log_tail()
    stored = {r["call_id"] for r in await rows(engine, "SELECT call_id FROM callstore.calls")}
    assert {f"serve-{i}" for i in acked} <= stored
    assert len(acked) >= 150 and sent < 2000  # it did stop mid-stream
    log = svc.log_text()
    assert '"callstore all stopped"' in log or "callstore all stopped" in log
    assert not list((tmp_path / "spool").glob("*/*.seg"))  # nothing left behind


async def test_two_receivers_on_one_database(
    db_url: str, engine: AsyncEngine, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    a = ServiceProcess(env_for(db_url, tmp_path), tmp_path, role="receiver", name="a")
    b = ServiceProcess(env_for(db_url, tmp_path), tmp_path, role="receiver", name="b")
    services += [a, b]
    await asyncio.gather(a.start(), b.start())
    # Both share a data directory, each with a spool directory of its own.
    assert len([p for p in (tmp_path / "spool").iterdir() if p.is_dir()]) == 2
    events = [body(i) for i in range(100)]
    async with httpx.AsyncClient(timeout=30) as client:
        # Every event to both replicas at once: duplicates racing on the same call.
        statuses = await asyncio.gather(*[send(client, s.url, e) for e in events for s in (a, b)])
    assert set(statuses) == {200}
    calls = await rows(engine, "SELECT call_id FROM callstore.calls")
    assert sorted(c["call_id"] for c in calls) == sorted(f"serve-{i}" for i in range(100))
    raw = await rows(engine, "SELECT deliveries FROM callstore.raw_events")
    assert len(raw) == 100 and {r["deliveries"] for r in raw} == {2}
    for s in (a, b):
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{s.url}/metrics")).text
        assert 'callstore_webhook_requests_total{status="200"} 100.0' in text
        assert await s.terminate() == 0


async def test_reuse_port_lets_replicas_share_an_address(
    db_url: str, engine: AsyncEngine, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    env = env_for(db_url, tmp_path, CALLSTORE_REUSE_PORT="true")
    a = ServiceProcess(env, tmp_path, role="receiver", name="a")
    b = ServiceProcess(env, tmp_path, role="receiver", name="b", port=a.port)
    services += [a, b]
    await a.start()
    await b.start()  # /healthz may be answered by a: b may still be starting
    a.kill()
    # Binding the port a holds would fail without SO_REUSEPORT; b serves it alone now.
    status = None
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            status = await send(client, b.url, body(1))
            if status is not None or not b.running():
                break
            await asyncio.sleep(0.1)
    assert status == 200 and b.running(), b.log_tail()
    assert len(await rows(engine, "SELECT 1 FROM callstore.calls")) == 1


async def test_logs_are_json_with_request_ids_and_carry_no_secret_or_phone(
    db_url: str, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    import subprocess
    import sys
    from urllib.parse import urlsplit

    keys = ["whk-AAAA-secret-1111", "whk-BBBB-rotated-2222"]
    api_key = "apikey-CCCC-secret-3333"
    password = urlsplit(db_url).password
    assert password
    env = env_for(db_url, tmp_path, ALOHUB_WEBHOOK_KEYS=",".join(keys), ALOHUB_API_KEY=api_key,
                  ALOHUB_API_URL="https://alohub.invalid/api", CALLSTORE_LOG_LEVEL="DEBUG")
    svc = ServiceProcess(env, tmp_path)
    services.append(svc)
    created = subprocess.run([sys.executable, "-m", "callstore", "tokens", "create", "--role", "reader"],
                             env=svc.env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[0].strip()
    phone = "0912345678"
    await svc.start()
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as client:
        ok = await client.post("/webhooks/alohub", headers={"Authorization": keys[1]},
                               json={**SAMPLE, "caller_number": phone, "call_id": f"c-{phone}"})
        assert ok.status_code == 200
        bad = await client.post("/webhooks/alohub", headers={"Authorization": keys[0], "X-Request-ID": "lb-abc.123"},
                                content=f'{{"caller_number": "{phone}", "key": "{keys[0]}"'.encode())
        assert bad.status_code == 400 and bad.headers["x-request-id"] == "lb-abc.123"
        wrong = await client.post("/webhooks/alohub", headers={"Authorization": f"Bearer {keys[0]}"}, json=SAMPLE)
        assert wrong.status_code == 401
        api = await client.get("/api/calls", params={"phone": phone}, headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 200 and api.headers["x-request-id"]
        assert (await client.get("/api/calls", headers={"Authorization": f"Bearer {token}x"})).status_code == 401
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert await svc.terminate() == 0
    log = svc.log_text()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    [rejected] = [e for e in lines if "dead letter" in e["message"]]
    assert rejected["request_id"] == "lb-abc.123"
    for secret in (*keys, api_key, password, token, phone):
        assert secret not in log, f"a secret or phone number reached the log: {secret[:4]}..."
