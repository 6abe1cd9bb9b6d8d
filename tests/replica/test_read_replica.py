"""Reads off the primary: `callstore serve` with DATABASE_READ_URL pointing at a
real streaming replica (made with `pg_basebackup -R` from a primary of this
module's own), as real processes.

- /api, report and console reads come from the replica: with the replica's
  replay paused, a call just written to the primary is not in them, and the
  replica's pg_stat_activity shows the service's read statements; once
  replayed, the call is there;
- webhooks, tokens and console logins write to the primary (a replica would
  refuse every write);
- the replica killed by its PID: reads still answer 200 from the primary and
  the service logs exactly one "falling back" line; started again, reads go
  back to it and /readyz says so;
- a replica further behind than the bound serves no reads until it catches up.

Only 127.0.0.1; every process started here is stopped by its PID in a finally.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import text

from store.engine import create_engine
from store.replica import ReadRouting
from store.tokens import create_token
from store.users import create_user
from tests.chaos.service import ServiceProcess
from tests.replica.servers import StreamingPair

pytestmark = pytest.mark.slow

KEY = "replica-webhook-key-1"
PASSWORD = "correct horse battery"
FALLING_BACK = "falling back to the primary"


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[StreamingPair]:
    """One primary and its streaming replica for the module (whatever TEST_DATABASE_URL says:
    the test makes the replica from a server it controls)."""
    servers = StreamingPair()
    try:
        await servers.start_primary()
        await asyncio.to_thread(servers.make_replica)
        yield servers
    finally:
        servers.close()


@pytest.fixture
async def service(pair: StreamingPair, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    """`callstore serve` on the primary, reading from the replica; a reader token and a console user."""
    env = {"DATABASE_URL": pair.primary_url, "DATABASE_READ_URL": pair.replica_url,
           "CALLSTORE_READ_MAX_LAG": "60", "CALLSTORE_DATA_DIR": str(tmp_path / "data"),
           "ALOHUB_WEBHOOK_KEYS": KEY}
    svc = ServiceProcess(env, tmp_path / "work")
    try:
        await svc.start()
        await until(lambda: replica_state(svc, in_use=True), "the replica in use")
        yield svc
    finally:
        svc.stop()


async def credentials(pair: StreamingPair, user: str) -> str:
    """A reader token (returned) and a console user named `user`, written on the primary."""
    engine = create_engine(pair.primary_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            _, token = await create_token(conn, f"replica-{user}", "reader", "default")
            await create_user(conn, "default", user, "reader", PASSWORD)
    finally:
        await engine.dispose()
    return token


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 45) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.2)


async def readyz(svc: ServiceProcess) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{svc.url}/readyz")


async def replica_state(svc: ServiceProcess, *, in_use: bool) -> bool:
    return bool((await readyz(svc)).json()["replica"]["in_use"] == in_use)


def event(call_id: str) -> bytes:
    return orjson.dumps({"call_id": call_id, "direction": "inbound", "call_status": "answered",
                         "starttime": "2026-11-30 09:00:00", "hotline": "19001234", "caller_number": "0912345678"})


async def deliver(client: httpx.AsyncClient, svc: ServiceProcess, pair: StreamingPair, call_id: str) -> None:
    """A webhook delivery, answered 200 and stored on the primary."""
    r = await client.post(f"{svc.url}/webhooks/alohub", content=event(call_id), headers={"Authorization": KEY})
    assert r.status_code == 200, r.text

    async def on_primary() -> bool:
        conn = await asyncpg.connect(pair.primary_url)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM callstore.calls WHERE call_id = $1", call_id))
        finally:
            await conn.close()

    await until(on_primary, f"call {call_id} on the primary")


async def listed(client: httpx.AsyncClient, svc: ServiceProcess, token: str) -> set[str]:
    r = await client.get(f"{svc.url}/api/calls", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return {c["call_id"] for c in r.json()["calls"]}


async def console(client: httpx.AsyncClient, svc: ServiceProcess, user: str) -> None:
    """Log `client` in to the console (login and session: writes on the primary)."""
    page = await client.get(f"{svc.url}/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    r = await client.post(f"{svc.url}/ui/login", data={"username": user, "password": PASSWORD, "csrf": csrf[1]})
    assert r.status_code == 303, r.text


def log_lines(svc: ServiceProcess, needle: str) -> list[str]:
    return [line for line in svc.log_text().splitlines() if needle in line]


async def test_reads_come_from_the_replica_and_writes_go_to_the_primary(
        pair: StreamingPair, service: ServiceProcess) -> None:
    token = await credentials(pair, "lan")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=20) as client:
        await console(client, service, "lan")
        await deliver(client, service, pair, "replica-a")
        await pair.wait_replayed()
        assert "replica-a" in await listed(client, service, token)

        await pair.replay(False)
        try:
            await deliver(client, service, pair, "replica-b")
            # Served from the replica, which has not replayed it yet.
            mark = pair.replica_log_size()
            assert await listed(client, service, token) >= {"replica-a"}
            assert "replica-b" not in await listed(client, service, token)
            assert (await client.get(f"{service.url}/api/calls/replica-b", headers=auth)).status_code == 404
            assert (await client.get(f"{service.url}/api/calls/replica-a", headers=auth)).status_code == 200
            api = " ".join(pair.replica_statements("callstore-read", mark))
            assert "FROM analytics.calls" in api and "callstore.raw_events" in api

            mark = pair.replica_log_size()
            calls_page = await client.get(f"{service.url}/ui/calls")
            assert calls_page.status_code == 200 and "replica-a" in calls_page.text
            assert "replica-b" not in calls_page.text
            assert "FROM analytics.calls" in " ".join(pair.replica_statements("callstore-read", mark))

            mark = pair.replica_log_size()
            report = await client.get(f"{service.url}/api/reports/queues",
                                      params={"from": "2026-11-30", "to": "2026-12-01"}, headers=auth)
            assert report.status_code == 200, report.text
            reads = " ".join(pair.replica_statements("callstore-read", 0))
            assert "FROM analytics.queue_stats_" in " ".join(pair.replica_statements("callstore-read", mark))
            # Tokens and console sessions are looked up (and touched) on the primary only.
            assert "api_tokens" not in reads and "console_sessions" not in reads
        finally:
            await pair.replay(True)

        async def replayed_b() -> bool:
            return "replica-b" in await listed(client, service, token)

        await until(replayed_b, "replica-b through the API once replayed")
        assert (await client.get(f"{service.url}/api/calls/replica-b", headers=auth)).status_code == 200
        assert "replica-b" in (await client.get(f"{service.url}/ui/calls")).text

        ready = await readyz(service)
        replica = ready.json()["replica"]
        assert ready.status_code == 200 and replica["configured"] and replica["in_use"]
        assert replica["state"] == "in use" and 0 <= replica["lag_seconds"] < 60
        metrics = (await client.get(f"{service.url}/metrics")).text
        assert "callstore_replica_in_use 1.0" in metrics
        assert re.search(r"^callstore_replica_lag_seconds \d", metrics, flags=re.M)
    assert len(log_lines(service, "in use (lag")) == 1
    assert log_lines(service, FALLING_BACK) == []


async def test_reads_survive_the_replica_going_away_and_return_to_it(
        pair: StreamingPair, service: ServiceProcess) -> None:
    token = await credentials(pair, "minh")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=20) as client:
        await console(client, service, "minh")
        await deliver(client, service, pair, "replica-c")
        await pair.wait_replayed()
        await asyncio.to_thread(pair.kill_replica)
        try:
            # Reads answer from the primary: the first one retried there, the others sent there.
            for _ in range(10):
                assert "replica-c" in await listed(client, service, token)
            assert (await client.get(f"{service.url}/ui/calls")).status_code == 200
            report = await client.get(f"{service.url}/api/reports/queues",
                                      params={"from": "2026-11-30", "to": "2026-12-01"}, headers=auth)
            assert report.status_code == 200
            await deliver(client, service, pair, "replica-d")
            assert "replica-d" in await listed(client, service, token)
            ready = await readyz(service)
            assert ready.status_code == 200 and ready.json()["ready"]
            assert ready.json()["replica"]["in_use"] is False
            assert ready.json()["replica"]["state"] == "unreachable"
            assert "callstore_replica_in_use 0.0" in (await client.get(f"{service.url}/metrics")).text
            await asyncio.sleep(6)  # past the back-off: the probe tries again, and finds it still gone
            assert "replica-c" in await listed(client, service, token)
            assert len(log_lines(service, FALLING_BACK)) == 1
        finally:
            await asyncio.to_thread(pair.start_replica)

        await until(lambda: replica_state(service, in_use=True), "the replica in use again")
        assert {"replica-c", "replica-d"} <= await listed(client, service, token)
        mark = pair.replica_log_size()
        assert "replica-c" in await listed(client, service, token)
        assert "FROM analytics.calls" in " ".join(pair.replica_statements("callstore-read", mark))
    [fell_back] = log_lines(service, FALLING_BACK)
    assert "unreachable" in fell_back and "***@" in fell_back
    assert str(pair.primary._state()["app_password"]) not in service.log_text()
    assert len(log_lines(service, "in use again")) == 1


async def test_a_replica_too_far_behind_serves_no_reads(pair: StreamingPair) -> None:
    primary = create_engine(pair.primary_url, pool_size=1)
    replica = create_engine(pair.replica_url, pool_size=1, application_name="callstore-read-lag-test")
    reads = ReadRouting(primary, replica, max_lag_s=2, every_s=0.2)

    async def state(expected: str) -> bool:
        return reads.state == expected

    try:
        async with reads.running():
            await until(lambda: state("in use"), "the replica in use")
            assert reads.reader() is replica
            await pair.replay(False)
            try:
                async with primary.begin() as conn:
                    await conn.execute(text("CREATE TABLE IF NOT EXISTS public.lag_probe (n int)"))
                    await conn.execute(text("INSERT INTO public.lag_probe VALUES (1)"))
                await until(lambda: state("lagging"), "the replica set aside as lagging", within=20)
                assert reads.reader() is primary and reads.lag_s is not None and reads.lag_s > 2
                # The read goes to the primary, which has the row.
                assert await reads.run(lambda c: _count(c)) == 1
            finally:
                await pair.replay(True)
            await until(lambda: state("in use"), "the replica in use again once caught up", within=20)
            assert reads.reader() is replica and await reads.run(lambda c: _count(c)) == 1
    finally:
        await primary.dispose()
        await replica.dispose()


async def _count(conn: object) -> int:
    result = await conn.execute(text("SELECT count(*) FROM public.lag_probe"))  # type: ignore[attr-defined]
    return int(result.scalar_one())
