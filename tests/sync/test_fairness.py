"""Many tenants, fairly: tenants against one real fake Alohub HTTP server and a real
PostgreSQL, one tenant slow, one failing; the others are not held up by either.

The 50-tenant test runs `callstore serve --role scheduler` as a real process
(stopped by its PID) and reads its /metrics; the others call the jobs in this
process. Order, not wall-clock thresholds: the others' runs must all have
finished before the slow tenant's Alohub sent its first answer (its first
stored event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.settings import Settings, TenantSettings
from store.tenant_runs import TenantRuns, TenantsFailed, run_per_tenant
from store.tenants import sync_tenants
from sync import recordings
from sync.backfill import Options, run_scheduled
from sync.client import RetryPolicy
from sync.fake import build_state
from sync.fake.server import RunningFake, create_multi_app, run_app, tenant_base
from sync.ratelimit import RateLimits
from sync.schedule import sync_all_queues
from tests.chaos.service import ServiceProcess
from tests.conftest import make_settings
from tests.sync.alohub import SINCE, UNTIL

TENANTS = 50
#: Tenants of the tests that run the jobs in this process.
FEW = 12
CALLS = 4
SECRET = "sk_live_DoNotLeak-"
QUICK = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.2, give_up_after_s=10)
OPTIONS = Options(limit=100, concurrency=2, batch_size=500)


def names(n: int = FEW) -> list[str]:
    return ["slow", "broken"] + [f"t{i:02d}" for i in range(n - 2)]


def serve_fake(tenants: list[str], since: datetime, until: datetime) -> RunningFake:
    """One real fake Alohub server for every tenant: `slow` holds every answer (until a test
    lets it go), `broken` answers 500 to everything."""
    states = {}
    for i, name in enumerate(tenants):
        state = build_state(calls=CALLS, seed=100 + i, since=since, until=until, api_key=SECRET + name)
        if name == "slow":
            state.faults.update({"hold": True})
        elif name == "broken":
            state.faults.update({"error_rate": 1.0})
        states[name] = state
    return run_app(create_multi_app(states))


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = serve_fake(names(), SINCE, UNTIL)
    try:
        yield server.base_url
    finally:
        server.stop()


async def hold_slow(base: str, hold: bool) -> None:
    async with httpx.AsyncClient(base_url=tenant_base(base, "slow")) as admin:
        (await admin.post("/_fake/faults", json={"hold": hold})).raise_for_status()


async def slow_until_the_others_end(engine: AsyncEngine, base: str, others: list[str],
                                    patience_s: float = 90) -> dict[str, object]:
    """Keep the slow tenant's Alohub from answering until every other tenant's backfill run
    has ended (bounded by `patience_s`), then let it answer. Returns what was seen then."""
    try:
        for _ in range(int(patience_s / 0.1)):
            async with engine.connect() as conn:
                ended = set((await conn.execute(text(
                    "SELECT tenant_id FROM callstore.ingest_runs WHERE status <> 'running'"))).scalars())
                slow_events = await conn.scalar(text(
                    "SELECT count(*) FROM callstore.raw_events WHERE tenant_id = 'slow'"))
            if set(others) <= ended:
                return {"others_ended": True, "slow_events": slow_events, "slow_ended": "slow" in ended}
            await asyncio.sleep(0.1)
        return {"others_ended": False}
    finally:
        await hold_slow(base, False)


def tenants_settings(base: str, **overrides: object) -> Settings:
    tenants = tuple(
        TenantSettings(name, api_url=tenant_base(base, name) + "/api", xapi_url=tenant_base(base, name),
                       api_key=SECRET + name, media_url=tenant_base(base, name))
        for name in names())
    return replace(make_settings(), tenants=tenants, backfill_overlap_s=24 * 3600, tenant_concurrency=8,
                   **overrides)  # type: ignore[arg-type]


async def test_fifty_tenants_under_the_scheduler_process(db_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    """`serve --role scheduler` with 50 tenants: the 48 others' backfills finish before the slow
    tenant's first answer, the broken one's run is failed, /metrics has per-tenant series."""
    now = datetime.now(timezone.utc)
    tenants = names(TENANTS)
    server = serve_fake(tenants, now - timedelta(minutes=90), now - timedelta(minutes=10))
    svc: ServiceProcess | None = None
    try:
        base = server.base_url
        lines = []
        for name in tenants:
            b = tenant_base(base, name)
            lines += [f"[tenants.{name}]", f'api_url = "{b}/api"', f'xapi_url = "{b}"', f'media_url = "{b}"',
                      f'api_key = "{SECRET}{name}"', ""]
        (tmp_path / "tenants.toml").write_text("\n".join(lines))
        env = {"DATABASE_URL": db_url, "CALLSTORE_DATA_DIR": str(tmp_path / "data"),
               "CALLSTORE_TENANTS_FILE": str(tmp_path / "tenants.toml"), "CALLSTORE_TENANT_CONCURRENCY": "8",
               "CALLSTORE_TENANT_RUN_BUDGET": "120", "CALLSTORE_BACKFILL_INTERVAL": "3600",
               "CALLSTORE_LOG_LEVEL": "INFO"}
        svc = ServiceProcess(env, tmp_path / "work", role="scheduler")
        await svc.start()
        others = [n for n in tenants if n not in ("slow", "broken")]
        seen = await slow_until_the_others_end(engine, base, others)
        ledger: dict[str, Any] = {}
        for _ in range(900):  # at most ~90 s: the broken tenant gives up after its retries (~30 s)
            async with engine.connect() as conn:
                ledger = {r.tenant_id: r for r in await conn.execute(text(
                    "SELECT tenant_id, status, error, records, finished_at FROM callstore.ingest_runs "
                    "WHERE status <> 'running'"))}
            if len(ledger) == TENANTS:
                break
            await asyncio.sleep(0.1)
        assert len(ledger) == TENANTS, svc.log_tail()
        async with engine.connect() as conn:
            stored = dict((await conn.execute(text(
                "SELECT tenant_id, count(*) FROM callstore.calls GROUP BY tenant_id"))).all())
            slow_first_answer = await conn.scalar(text(
                "SELECT min(received_at) FROM callstore.raw_events WHERE tenant_id = 'slow'"))
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{svc.url}/metrics")).text
        await svc.terminate()
        log = svc.log_text()
    finally:
        if svc is not None:
            svc.stop()
        server.stop()
    # The 48 others all ended, with every call stored, while the slow tenant had no answer yet...
    assert seen == {"others_ended": True, "slow_events": 0, "slow_ended": False}
    assert {n: (ledger[n].status, ledger[n].records, stored.get(n)) for n in others} == {
        n: ("ok", CALLS, CALLS) for n in others}
    # ...which then got its answers and ended ok too, after them.
    assert ledger["slow"].status == "ok" and stored.get("slow") == CALLS
    assert max(ledger[n].finished_at for n in others) < slow_first_answer <= ledger["slow"].finished_at
    assert ledger["broken"].status == "failed" and "broken" not in stored
    assert "HTTP 500" in ledger["broken"].error
    assert SECRET not in log and SECRET not in metrics
    assert 'callstore_job_tenant_runs_total{job="backfill",tenant="t00",outcome="ok"} 1' in metrics
    assert 'callstore_job_tenant_runs_total{job="backfill",tenant="slow",outcome="ok"} 1' in metrics
    assert 'callstore_job_tenant_runs_total{job="backfill",tenant="broken",outcome="ok"} 0' in metrics
    assert 'callstore_job_last_success_timestamp_seconds{job="backfill",tenant="t47"}' in metrics
    assert 'callstore_alohub_requests_total{tenant="broken",outcome="server_error"}' in metrics
    for name in ("t00", "t47", "slow"):
        assert f"job backfill, tenant {name}: ok in" in log
    assert "job backfill, tenant broken: " in log and "job backfill: 1 tenant(s) did not complete: broken" in log


async def test_tenants_one_slow_one_broken_in_process(engine: AsyncEngine, fake: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = tenants_settings(fake)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    runs = TenantRuns()
    limits = RateLimits(observe=runs.request)
    caplog.set_level(logging.INFO, logger="callstore")
    await hold_slow(fake, True)
    watcher = asyncio.create_task(slow_until_the_others_end(engine, fake, [n for n in names() if n != "slow"]))
    try:
        with pytest.raises(TenantsFailed) as failed:
            await run_scheduled(engine, settings, limits=limits, options=OPTIONS, retry=QUICK, now=UNTIL,
                                runs=runs)
    finally:
        seen = await watcher
    assert [t for t, _ in failed.value.failures] == ["broken"]
    assert seen == {"others_ended": True, "slow_events": 0, "slow_ended": False}

    async with engine.connect() as conn:
        ledger = {r.tenant_id: r for r in await conn.execute(text(
            "SELECT tenant_id, status, error, records, finished_at FROM callstore.ingest_runs"))}
        stored = dict((await conn.execute(text(
            "SELECT tenant_id, count(*) FROM callstore.calls GROUP BY tenant_id"))).all())
        slow_first_answer = await conn.scalar(text(
            "SELECT min(received_at) FROM callstore.raw_events WHERE tenant_id = 'slow'"))
    others = [n for n in names() if n not in ("slow", "broken")]
    # Every other tenant: all its calls stored, its run ok...
    assert {n: (ledger[n].status, ledger[n].records, stored.get(n)) for n in others} == {
        n: ("ok", CALLS, CALLS) for n in others}
    # ...and finished before the slow tenant's Alohub answered for the first time.
    assert slow_first_answer is not None and ledger["slow"].status == "ok"
    assert max(ledger[n].finished_at for n in others) < slow_first_answer <= ledger["slow"].finished_at
    # The broken tenant's run is recorded as failed, with Alohub's answer, and its key is nowhere.
    assert ledger["broken"].status == "failed" and "HTTP 500" in ledger["broken"].error
    assert "broken" not in stored
    assert SECRET not in caplog.text and SECRET not in ledger["broken"].error
    # One line per tenant for the run, naming it, with its outcome.
    for name in names():
        lines = [r for r in caplog.records if r.getMessage().startswith(f"job backfill, tenant {name}:")]
        assert len(lines) == 1, name
        assert (lines[0].levelno == logging.ERROR) == (name == "broken")

    # Per-tenant series, as /metrics shows them.
    metrics = runs.text()
    assert 'callstore_job_tenant_runs_total{job="backfill",tenant="t07",outcome="ok"} 1' in metrics
    assert 'callstore_job_tenant_runs_total{job="backfill",tenant="broken",outcome="failed"} 1' in metrics
    assert 'callstore_job_last_success_timestamp_seconds{job="backfill",tenant="slow"}' in metrics
    assert 'callstore_job_last_success_timestamp_seconds{job="backfill",tenant="broken"}' not in metrics
    assert 'callstore_job_duration_seconds_count{job="backfill",tenant="t00"} 1' in metrics
    assert runs.requests("broken").keys() == {"server_error"} and runs.requests("broken")["server_error"] >= 3
    assert 'callstore_alohub_requests_total{tenant="broken",outcome="server_error"}' in metrics
    assert 'callstore_alohub_requests_total{tenant="t00",outcome="ok"}' in metrics


async def test_queue_sync_and_recordings_go_on_for_the_others(engine: AsyncEngine, fake: str) -> None:
    """The other per-tenant jobs: a cut slow tenant and a failing one leave the rest done."""
    settings = tenants_settings(fake, tenant_run_budget_s=3)
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    runs = TenantRuns()
    limits = RateLimits(observe=runs.request)
    await hold_slow(fake, True)
    try:
        with pytest.raises(TenantsFailed) as failed:
            await sync_all_queues(engine, settings, limits, runs=runs)
    finally:
        await hold_slow(fake, False)
    # Broken gives up (8 attempts of 500) or is cut; slow is cut after its budget.
    assert sorted(t for t, _ in failed.value.failures) == ["broken", "slow"]
    assert dict(failed.value.failures)["slow"].startswith("cut after its time budget of 3 s")
    async with engine.connect() as conn:
        with_catalogue = set((await conn.execute(text(
            "SELECT DISTINCT tenant_id FROM callstore.queues"))).scalars())
    assert with_catalogue == {n for n in names() if n not in ("slow", "broken")}
    assert runs.runs("sync-queues", "slow")["cut"] == 1

    # Recordings: every tenant its own task; nothing due here, so every tenant is ok and counted.
    report = await recordings.run_job(engine, settings, runs=runs)
    assert report.attempted == 0
    assert all(runs.runs("recordings", n)["ok"] == 1 for n in names())


async def test_a_slow_tenant_holds_one_slot_and_is_cut_at_its_budget() -> None:
    """run_per_tenant alone: two slots, one tenant that never ends, one that raises."""
    order: list[str] = []
    stuck = asyncio.Event()

    async def work(tenant: str) -> str:
        if tenant == "slow":
            await stuck.wait()  # never set: only the budget ends it
        if tenant == "bad":
            raise ValueError("no such campaign")
        await asyncio.sleep(0.01)
        order.append(tenant)
        return tenant

    runs = TenantRuns()
    results = await run_per_tenant("job", ["slow", "bad", *[f"t{i}" for i in range(10)]], work,
                                   concurrency=2, budget_s=1.0, runs=runs)
    outcome = {r.tenant_id: r.outcome for r in results}
    assert outcome == {"slow": "cut", "bad": "failed", **{f"t{i}": "ok" for i in range(10)}}
    assert order == [f"t{i}" for i in range(10)]  # all on the one free slot, while slow held the other
    slow = results[0]
    assert all(r.finished < slow.finished for r in results[2:])
    assert results[1].error == "no such campaign"


class _Counting(httpx.AsyncBaseTransport):
    """The real transport, counting the requests in flight at once."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.now = self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("limit", [None, 1, 2])
async def test_a_tenants_own_concurrent_request_limit(fake: str, limit: int | None) -> None:
    """ALOHUB_MAX_CONCURRENT_REQUESTS: at most that many of the tenant's requests in flight."""
    from sync.client import AlohubClient

    base = tenant_base(fake, "t01")
    tenant = TenantSettings("t01", api_url=base + "/api", xapi_url=base, api_key=SECRET + "t01",
                            max_concurrent_requests=limit)
    async with httpx.AsyncClient(base_url=base) as admin:
        (await admin.post("/_fake/faults", json={"latency_ms": 100})).raise_for_status()
    transport = _Counting()
    try:
        async with httpx.AsyncClient(transport=transport) as http:
            client = AlohubClient(http, tenant, limits=RateLimits())
            await client.gateway("GET", "queues", "/v1/queues/inbound")  # learns the gateway's limits
            transport.most = 0
            await asyncio.gather(*(client.gateway("GET", "queues", "/v1/queues/inbound") for _ in range(4)))
    finally:
        async with httpx.AsyncClient(base_url=base) as admin:
            (await admin.post("/_fake/faults", json={"latency_ms": 0})).raise_for_status()
    assert transport.most == (limit or 4)


async def test_a_rate_limited_tenant_waits_alone() -> None:
    """A 429 blocks the tenant it answered (for its Retry-After), not the others."""
    limits = RateLimits(clock=lambda: 1000.0)
    ticket = await limits.acquire("a", "searchCallV2")
    limits.release(ticket, {"x-ratelimit-limit-tenant": "5", "x-ratelimit-remaining-tenant": "0"}, status=429,
                   retry_after=3600)
    other = await asyncio.wait_for(limits.acquire("b", "searchCallV2"), 10)  # not the hour of tenant a
    limits.release(other, {})
    waiting = asyncio.create_task(limits.acquire("a", "searchCallV2"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()
