"""Backfill against the fake Alohub into a real Postgres: the store converges
to Alohub's history, the ledger says what the webhook missed, limits hold,
and N schedulers run each window once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.scheduler import Scheduler
from store.engine import create_engine
from store.tenants import sync_tenants
from sync.backfill import Options, backfill, run_scheduled, scheduled_window
from sync.client import AlohubClient, RetryPolicy, new_http_client
from sync.fake import FakeState, build_state, events_for, running_fake, send_events
from sync.ledger import advance_cursor, ledger_metrics, read_cursor
from sync.queues import fetch_queues, store_catalogue
from sync.ratelimit import RateLimits
from sync.schedule import sync_jobs
from sync.sources import CallLogs, SearchCallV2, Window
from tests.conftest import WEBHOOK_KEY
from tests.sync.alohub import API_KEY, COMPARED, SINCE, UNTIL, expected_row, scaled_clock, settings_for, tenant_for

SMALL = Options(limit=40, concurrency=4, batch_size=150)


@pytest.fixture
def state() -> FakeState:
    return build_state(calls=400, seed=5, since=SINCE, until=UNTIL, api_key=API_KEY)


@pytest.fixture
def fake(state: FakeState) -> Iterator[str]:
    with running_fake(state) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


async def fake_get(base: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=base) as c:
        return (await c.get(path)).json()


async def fake_post(base: str, path: str, body: object) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        (await c.post(path, json=body)).raise_for_status()


async def stored_calls(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        columns = ", ".join(f"a.{c}" for c in COMPARED)
        rows = (await conn.execute(text(
            f"SELECT {columns}, c.recording_url, a.queue_id FROM analytics.calls a"
            " JOIN callstore.calls c USING (tenant_id, call_id) WHERE a.tenant_id = 'default'"))).mappings().all()
    return {r["call_id"]: dict(r) for r in rows}


async def ledger_of(engine: AsyncEngine, run_id: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM analytics.ingest_ledger WHERE run_id = :r ORDER BY day"),
                                  {"r": run_id})
        return [dict(r) for r in rows.mappings()]


async def test_one_backfill_makes_the_store_equal_to_alohub_history(
        engine: AsyncEngine, receiver: str, fake: str, http: httpx.AsyncClient) -> None:
    history = await fake_get(fake, "/_fake/calls")
    from sync.fake import FakeCall

    calls = [FakeCall.from_record(r) for r in history]
    report = await send_events(f"{receiver}/webhooks/alohub", WEBHOOK_KEY, events_for(calls, fake),
                               drop=0.10, duplicate=0.05, reorder=True, seed=9)
    assert report.unacknowledged == [] and report.gave_up == []
    assert report.dropped_call_ids and report.duplicated and report.calls_out_of_order
    assert len(await stored_calls(engine)) == len(calls) - len(report.dropped_call_ids)

    # Alohub's history disagrees with what the webhook said about one call.
    dropped = set(report.dropped_call_ids)
    fixed = dict(next(r for r in history if r["hangup_by"] == "customer" and r["endtime"]
                      and r["call_id"] not in dropped), hangup_by="agent")
    await fake_post(fake, "/_fake/calls?mode=extend", [fixed])
    history = await fake_get(fake, "/_fake/calls")

    tenant = tenant_for(fake)
    client = AlohubClient(http, tenant)
    async with engine.begin() as conn:
        await store_catalogue(conn, tenant, await fetch_queues(client), datetime.now(timezone.utc))
    run = await backfill(engine, tenant, SearchCallV2(client), Window(SINCE, UNTIL), options=SMALL)

    assert run.status == "ok" and run.records == len(calls) and run.pages == 10
    stored = await stored_calls(engine)
    assert set(stored) == {c.call_id for c in calls}
    queue_of = {"19001001": 1001226, "19001002": 1001227, "+842873001234": 1001228, "+84909000111": 1001229}
    for record in history:
        want = expected_row(record, fake)
        got = stored[record["call_id"]]
        assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}, record["call_id"]
        assert got["recording_url"] == want["recording_url"]
        inbound = want["direction"] == "inbound"
        assert got["queue_id"] == (queue_of.get(want["hotline"]) if inbound else None)

    # The ledger: exactly the dropped calls are first seen by backfill; the one
    # call the webhook had wrong is changed, in that field only.
    assert run.tally.first_seen == len(report.dropped_call_ids)
    assert run.tally.changed == 1 and dict(run.tally.fields) == {"hangup_by": 1} and run.tally.webhook_only == 0
    rows = await ledger_of(engine, run.run_id)
    assert sum(r["first_seen_by_backfill"] for r in rows) == len(report.dropped_call_ids)
    assert [r["changed_fields"] for r in rows] == [{"hangup_by": 1}]
    assert sum(r["history_records"] for r in rows) == len(calls)
    assert {r["day"].isoformat() for r in rows} == {"2024-01-13"} and rows[0]["run_status"] == "ok"
    async with engine.connect() as conn:
        first = set((await conn.execute(text("SELECT call_id FROM callstore.calls WHERE first_source = 'history'"))).scalars())
    assert first == set(report.dropped_call_ids)

    # The webhook delivered a call that the history never lists.
    stray = dict(history[0], call_id="20240113120000-WEBHOOKX-00001", starttime="2024-01-13 12:00:00")
    async with httpx.AsyncClient() as c:
        ack = await c.post(f"{receiver}/webhooks/alohub", headers={"Authorization": WEBHOOK_KEY},
                           json={**stray, "direction": "inbound"})
        assert ack.status_code == 200
    again = await backfill(engine, tenant, SearchCallV2(client), Window(SINCE, UNTIL), options=SMALL)
    assert (again.tally.first_seen, again.tally.changed, again.tally.webhook_only) == (0, 0, 1)
    rows = await ledger_of(engine, again.run_id)
    assert [(r["changed_by_backfill"], r["seen_only_by_webhook"]) for r in rows] == [(0, 1)]

    # Re-running changes nothing and counts nothing (idempotent).
    third = await backfill(engine, tenant, SearchCallV2(client), Window(SINCE, UNTIL), options=SMALL)
    assert (third.tally.first_seen, third.tally.changed, third.records) == (0, 0, len(calls))

    metrics = await ledger_metrics(engine)
    assert f'callstore_backfill_first_seen_calls{{tenant="default"}} {len(report.dropped_call_ids)}' in metrics
    assert 'callstore_backfill_changed_calls{tenant="default"} 1' in metrics


async def test_completes_under_limits_429_and_500_without_exceeding(
        engine: AsyncEngine, state: FakeState, fake: str, http: httpx.AsyncClient) -> None:
    state.clock = scaled_clock(10)  # the fake's 10 s windows last 1 s
    await fake_post(fake, "/_fake/settings", {"route_limit": 3, "tenant_limit": 4, "max_limit": 30})
    await fake_post(fake, "/_fake/faults", {"error_rate": 0.15, "rate429": 0.1, "seed": 4})
    tenant = tenant_for(fake)
    client = AlohubClient(http, tenant, limits=RateLimits(window_s=1.0),
                          retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, give_up_after_s=30))
    async with engine.begin() as conn:
        await sync_tenants(conn, [tenant])
    run = await backfill(engine, tenant, SearchCallV2(client), Window(SINCE, UNTIL),
                         options=Options(limit=100, concurrency=8, batch_size=1000, chunk=timedelta(hours=6)))
    assert run.status == "ok" and run.records == 400 and run.tally.first_seen == 400
    seen = await fake_get(fake, "/_fake/stats")
    assert seen["exceeded"] == 0 and seen["max_window_route"]["searchCallV2"] <= 3
    assert seen["responses_500"] > 0 and seen["responses_429"] > 0  # the faults did happen, and were retried
    assert len(await stored_calls(engine)) == 400


async def test_call_logs_source_on_the_gateway(engine: AsyncEngine, fake: str, http: httpx.AsyncClient) -> None:
    tenant = tenant_for(fake, api_url=None)
    run = await backfill(engine, tenant, CallLogs(AlohubClient(http, tenant)), Window(SINCE, UNTIL), options=SMALL)
    assert run.source == "call-logs" and run.records == 400 and len(await stored_calls(engine)) == 400
    assert (await fake_get(fake, "/_fake/stats"))["requests"] == {"call-logs": 10}


async def test_scheduled_windows_overlap_and_the_cursor_only_moves_forward(engine: AsyncEngine, fake: str) -> None:
    settings = settings_for(fake, backfill_overlap_s=7200)
    now = UNTIL - timedelta(hours=3)
    first = await run_scheduled(engine, settings, now=now, options=SMALL)
    assert [r.window for r in first] == [Window(now - timedelta(hours=2), now)]
    later = now + timedelta(minutes=10)
    second = await run_scheduled(engine, settings, now=later, options=SMALL)
    assert [r.window for r in second] == [Window(now - timedelta(hours=2), later)]
    async with engine.begin() as conn:
        assert await read_cursor(conn, "default", "backfill") == later
        await advance_cursor(conn, "default", "backfill", now)  # backwards: ignored
        assert await read_cursor(conn, "default", "backfill") == later
    assert scheduled_window(None, later, timedelta(hours=2)).start == later - timedelta(hours=2)


async def test_two_schedulers_run_each_window_once(db_url: str, engine: AsyncEngine, state: FakeState,
                                                   fake: str) -> None:
    await fake_post(fake, "/_fake/faults", {"latency_ms": 30})
    settings = settings_for(fake, backfill_overlap_s=24 * 3600)  # the window covers the fake's whole day
    engines = [create_engine(db_url, pool_size=2) for _ in range(2)]
    outcomes: list[str] = []
    try:
        schedulers = [Scheduler(e, settings, sync_jobs(settings, clock=lambda: UNTIL),
                                on_run=lambda j, o: outcomes.append(o))
                      for e in engines]
        job = next(j for j in schedulers[0].jobs if j.name == "backfill")
        await asyncio.gather(*(s._run(job) for s in schedulers))
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(outcomes) == ["ok", "skipped_locked"]
    async with engine.connect() as conn:
        runs = (await conn.execute(text("SELECT kind, status, records FROM callstore.ingest_runs"))).all()
    assert runs == [("scheduled", "ok", 400)]
    assert (await fake_get(fake, "/_fake/stats"))["requests"]["searchCallV2"] == 4  # 400 records, 100 a page


def test_jobs_are_off_with_a_reason_without_api_settings() -> None:
    from tests.conftest import make_settings

    jobs = {j.name: j for j in sync_jobs(make_settings())}
    assert "ALOHUB_API_KEY is not set" in (jobs["backfill"].disabled_reason or "")
    assert "ALOHUB_API_KEY" in (jobs["sync-queues"].disabled_reason or "")
    ok = {j.name: j for j in sync_jobs(settings_for("http://127.0.0.1:1"))}
    assert ok["backfill"].disabled_reason is None and ok["backfill"].every_seconds == 600
    no_url = settings_for("http://127.0.0.1:1")
    no_url = replace(no_url, tenants=(replace(no_url.tenants[0], api_url=None),))
    assert "ALOHUB_API_URL" in (sync_jobs(no_url)[0].disabled_reason or "")
    assert sync_jobs(replace(no_url, history_source="call-logs"))[0].disabled_reason is None


async def test_progress_per_page_and_an_interrupted_run_keeps_and_resumes(
        engine: AsyncEngine, fake: str, http: httpx.AsyncClient) -> None:
    from sync.backfill import RunReport

    tenant = tenant_for(fake)
    async with engine.begin() as conn:
        await sync_tenants(conn, [tenant])
    # Batches larger than the whole range: nothing would be written before the end of the run.
    options = Options(limit=20, concurrency=2, batch_size=100_000, chunk=timedelta(hours=3))
    seen: list[tuple[int, int, int | None]] = []
    enough = asyncio.Event()

    def progress(r: RunReport) -> None:
        seen.append((r.fetched_records, r.records, r.expected_records))
        if r.windows_done >= 3:
            enough.set()

    source = SearchCallV2(AlohubClient(http, tenant))
    task = asyncio.create_task(backfill(engine, tenant, source, Window(SINCE, UNTIL), options=options,
                                        progress=progress))
    await asyncio.wait_for(enough.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # The bar moved with every page, before anything was stored, towards a known total.
    fetched = [f for f, stored, _ in seen if stored == 0]
    assert len(fetched) >= 4 and fetched == sorted(fetched) and fetched[-1] > 0
    assert all(total is not None and total >= f for f, _, total in seen[1:])

    # The interrupted run stored what it had fetched, and says so.
    async with engine.connect() as conn:
        run = (await conn.execute(text("SELECT status, pages, records, covered_until FROM callstore.ingest_runs"))).one()
        stored = await conn.scalar(text("SELECT count(*) FROM callstore.calls"))
    assert run.status == "interrupted" and run.pages > 0 and run.records == stored > 0
    assert run.covered_until >= SINCE + timedelta(hours=9)

    # Run again: it resumes after the windows the first run completed, and ends with everything.
    again = await backfill(engine, tenant, source, Window(SINCE, UNTIL), options=options)
    assert again.status == "ok" and again.resumed_from == run.covered_until
    assert again.windows < 8
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.calls")) == 400
    # A completed range is not resumed: the next run fetches it all, and its total is exact.
    full = await backfill(engine, tenant, source, Window(SINCE, UNTIL), options=options)
    assert full.resumed_from is None and full.windows == 8
    assert full.expected_records == full.fetched_records == 400
