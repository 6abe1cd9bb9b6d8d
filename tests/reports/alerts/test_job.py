"""The alerts job end to end: generated history, a real HTTP server receiving
the notifications, evaluations driven with explicit times, and the backtest
replaying the same history."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callstore.composition import build_extensions, build_jobs
from receiver.app import create_app
from receiver.metrics import Metrics
from reports.alerts.backtest import backtest
from reports.alerts.job import run_alerts
from reports.alerts.metrics import alert_metrics
from store.settings import Settings
from store.tenants import sync_tenants
from tests.conftest import serving
from tests.conftest import test_settings as make_settings
from tests.reports.alerts.calls import Call, insert_calls, steady

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 16, 9, 0, tzinfo=ZONE)  # a Monday morning
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
SALES, SUPPORT, VIP = 101, 102, 103
SPIKE = (T0 + timedelta(minutes=5), T0 + timedelta(minutes=15))


@dataclass
class Inbox:
    """What the local notification server received."""

    webhook: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    slack: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    fail_next: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "down"}, status_code=503)
            self.webhook.append((dict(request.headers), await request.body()))
            return JSONResponse({"ok": True})

        async def slack(request: Request) -> JSONResponse:
            self.slack.append(json.loads(await request.body()))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/slack", slack, methods=["POST"])])


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> None:
    """The Standard Webhooks verification, written from the spec (not with the code under test)."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(ts)) < 300
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    versions = [s.split(",", 1) for s in headers["webhook-signature"].split(" ")]
    assert any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in versions)


def history() -> list[Call]:
    calls: list[Call] = []
    # The same hours of the four previous weeks, and today: steady traffic, ~5 % abandoned.
    for k in range(0, 5):
        lo = T0 - timedelta(weeks=k) - timedelta(minutes=90)
        hi = T0 - timedelta(weeks=k) + timedelta(minutes=90)
        calls += steady(f"s{k}", SALES, lo, hi, 2, 20)
        calls += steady(f"p{k}", SUPPORT, lo, hi, 2, 20)
        calls += steady(f"u{k}", None, lo, hi, 1, 20)
    # The spike: four more calls a minute in Sales, every one abandoned after 50 s.
    t, i = SPIKE[0], 0
    while t < SPIKE[1]:
        calls.append(Call(f"spike-{i}", SALES, t, "abandoned", 50, caller=f"+8491{i:07d}"))
        t += timedelta(seconds=15)
        i += 1
    # A quiet queue: two calls, one abandoned (a 50 % rate that must not wake anyone).
    calls.append(Call("vip-1", VIP, T0 + timedelta(minutes=8), "abandoned", 60))
    calls.append(Call("vip-2", VIP, T0 + timedelta(minutes=9), "answered", 5))
    return calls


async def setup(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
        await conn.execute(text("INSERT INTO callstore.queues (tenant_id, queue_id, name) VALUES "
                                "('default', 101, 'Sales'), ('default', 102, 'Support'), ('default', 103, 'VIP')"))
    await insert_calls(engine, history())


async def states(engine: AsyncEngine) -> dict[int | None, tuple[str, int, float | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT queue_id, state, offered, abandon_rate FROM callstore.alert_states "
                                       "WHERE tenant_id = 'default'"))
        return {r.queue_id: (r.state, r.offered, r.abandon_rate) for r in rows}


async def test_spike_fires_once_resolves_once_and_backtest_agrees(engine: AsyncEngine) -> None:
    inbox = Inbox()
    async with serving(inbox.app()) as url:
        settings = make_settings(alert_webhook_url=f"{url}/hook", alert_webhook_secret=SECRET,
                                 alert_slack_url=f"{url}/slack")
        await setup(engine, settings)
        times = [T0 + timedelta(minutes=m) for m in range(0, 46)]
        seen: dict[int | None, list[str]] = {}
        vip: set[tuple[int, float | None]] = set()
        async with httpx.AsyncClient() as client:
            for at in times:
                # A few seconds past the minute, as the scheduler would run: evaluates the whole minute.
                await run_alerts(engine, settings, now=at + timedelta(seconds=7), client=client, retry_delays=(0,))
                for q, (s, offered, rate) in (await states(engine)).items():
                    seen.setdefault(q, []).append(s)
                    if q == VIP:
                        vip.add((offered, rate))
            # A second run within the same minute evaluates nothing again.
            again = await run_alerts(engine, settings, now=times[-1] + timedelta(seconds=30), client=client)
            assert again.transitions == []

    # Sales: ok, then exactly one pending evaluation, firing, then resolving once and resolved.
    sales = seen[SALES]
    compact = [s for i, s in enumerate(sales) if i == 0 or sales[i - 1] != s]
    assert compact == ["ok", "pending", "firing", "resolving", "resolved"], sales
    assert sales.count("pending") == 1 and sales.count("resolving") == 1
    # The other queues never left "ok"; the quiet queue was evaluated (50 %) and stayed silent.
    for q in (SUPPORT, VIP, None):
        assert set(seen[q]) == {"ok"}, (q, seen[q])
    assert (2, 0.5) in vip
    async with engine.connect() as conn:
        [alert] = (await conn.execute(text("SELECT * FROM analytics.alerts"))).all()
    assert alert.queue_id == SALES and alert.queue_name == "Sales" and alert.state == "resolved"
    assert SPIKE[0] < alert.fired_at < SPIKE[1]
    assert SPIKE[1] < alert.resolved_at <= SPIKE[1] + timedelta(minutes=17)
    assert alert.fire_notification == "sent" and alert.resolve_notification == "sent"
    assert alert.abandon_rate > alert.floor_rate and alert.rate_lower_bound > alert.baseline_upper_bound
    assert alert.baseline_calls >= 400 and alert.peak_abandon_rate >= alert.abandon_rate

    # Exactly one message when it fired and one when it resolved, on each notifier.
    assert [json.loads(b)["type"] for _, b in inbox.webhook] == ["abandon_spike.firing", "abandon_spike.resolved"]
    assert len(inbox.slack) == 2
    for headers, body in inbox.webhook:
        verify_standard_webhook(SECRET, headers, body)
    fired = json.loads(inbox.webhook[0][1])["data"]
    assert fired["queue_id"] == SALES and fired["queue_name"] == "Sales"
    assert fired["window"]["minutes"] == 15
    assert datetime.fromisoformat(fired["window"]["end"]) == alert.fired_at
    assert fired["figures"]["abandon_rate"] > fired["baseline"]["upper_bound"] > fired["baseline"]["abandon_rate"]
    spike_callers = [c for c in fired["abandoned_callers"] if c["caller_number"].startswith("+8491")]
    assert len(spike_callers) >= 5 and all(c["wait_seconds"] == 50 for c in spike_callers)
    assert all(datetime.fromisoformat(c["started_at"]) >= SPIKE[0] for c in spike_callers)
    resolved = json.loads(inbox.webhook[1][1])["data"]
    # The resolve message lists everyone abandoned during the alert: the whole spike.
    assert sum(c["caller_number"].startswith("+8491") for c in resolved["abandoned_callers"]) == 40
    assert "Sales" in inbox.slack[0]["text"] and spike_callers[0]["caller_number"] in inbox.slack[0]["text"]
    assert "Resolved" in inbox.slack[1]["text"]

    # The backtest over the same history reports the same transitions at the same times.
    async with engine.connect() as conn:
        replayed = await backtest(conn, settings.tenant("default"), times[0], times[-1] + timedelta(minutes=1))
    assert [(s.queue_id, s.transition, s.at) for s in replayed] == [
        (SALES, "firing", alert.fired_at), (SALES, "resolved", alert.resolved_at)]

    # /metrics carries the current rate and state per queue, read from the shared state table.
    text_ = await alert_metrics(engine)
    assert 'callstore_alert_state{tenant="default",queue="101",queue_name="Sales",state="resolved"} 1' in text_
    assert 'callstore_queue_abandon_rate{tenant="default",queue="103",queue_name="VIP",window_minutes="15"} NaN' in text_


async def test_backtest_ending_in_the_future_stops_at_now(engine: AsyncEngine) -> None:
    """Run while the spike's alert is firing, a backtest to the end of the day reports the firing,
    not a "resolved" in the future (a window of calls that have not happened yet is empty)."""
    await setup(engine, make_settings())
    now = SPIKE[1] + timedelta(minutes=2, seconds=7)
    async with engine.connect() as conn:
        steps = await backtest(conn, make_settings().tenant("default"), T0, T0 + timedelta(hours=12), now=now)
        # The same range once its end has passed: the alert resolves.
        later = await backtest(conn, make_settings().tenant("default"), T0, T0 + timedelta(hours=12),
                               now=T0 + timedelta(hours=13))
    assert [(s.queue_id, s.transition) for s in steps] == [(SALES, "firing")]
    assert all(s.at <= now for s in steps)
    assert [(s.queue_id, s.transition) for s in later] == [(SALES, "firing"), (SALES, "resolved")]
    assert later[1].at > now


async def test_metrics_route_and_job_are_wired(engine: AsyncEngine) -> None:
    settings = make_settings()
    await setup(engine, settings)
    await run_alerts(engine, settings, now=T0 + timedelta(minutes=8))
    assert ("alerts", 60) in [(j.name, j.every_seconds) for j in build_jobs(settings)]
    app = create_app(settings, engine, build_extensions(settings, engine, "all", Metrics()))
    async with serving(app) as url, httpx.AsyncClient() as client:
        body = (await client.get(f"{url}/metrics")).text
    rate_lines = [line for line in body.splitlines() if line.startswith('callstore_queue_abandon_rate{tenant="default",queue="101"')]
    assert len(rate_lines) == 1 and float(rate_lines[0].rsplit(" ", 1)[1]) > 0.2
    assert 'callstore_alert_state{tenant="default",queue="101",queue_name="Sales",state="pending"} 1' in body


async def test_failed_delivery_is_recorded_and_retried_once_back(engine: AsyncEngine) -> None:
    inbox = Inbox(fail_next=2)  # the first send and its one retry fail
    async with serving(inbox.app()) as url:
        settings = make_settings(alert_webhook_url=f"{url}/hook", alert_webhook_secret=SECRET)
        await setup(engine, settings)
        async with httpx.AsyncClient() as client:
            for m in range(0, 12):
                await run_alerts(engine, settings, now=T0 + timedelta(minutes=m), client=client, retry_delays=(0,))
            async with engine.connect() as conn:
                failures = (await conn.execute(text("SELECT notifier, attempt, http_status, error FROM callstore.alert_delivery_failures"))).all()
                [pending] = (await conn.execute(text("SELECT fire_notification FROM analytics.alerts"))).all()
            assert [tuple(f) for f in failures] == [("webhook", 1, 503, "webhook: HTTP 503")]
            assert pending.fire_notification == "pending" and inbox.webhook == []
            # Time passes: the outbox retries and the message goes out, once.
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE callstore.alert_outbox SET next_attempt_at = now()"))
            await run_alerts(engine, settings, now=T0 + timedelta(minutes=12), client=client, retry_delays=(0,))
            await run_alerts(engine, settings, now=T0 + timedelta(minutes=13), client=client, retry_delays=(0,))
    assert [json.loads(b)["type"] for _, b in inbox.webhook] == ["abandon_spike.firing"]
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT fire_notification FROM analytics.alerts")) == "sent"


async def test_evaluation_survives_a_crash_before_commit(engine: AsyncEngine) -> None:
    """State, history and outbox are one transaction: a crash before commit leaves
    nothing half done, and the next run fires (and enqueues) exactly once."""
    from reports.alerts.state import evaluate_tenant

    settings = make_settings(alert_webhook_url="http://127.0.0.1:9/hook", alert_webhook_secret=SECRET)
    await setup(engine, settings)
    tenant = settings.tenant("default")
    for m in range(0, 9):  # Sales is pending at 09:08 and fires at 09:09
        await run_alerts(engine, settings, now=T0 + timedelta(minutes=m), client=None, retry_delays=(0,))
    assert (await states(engine))[SALES][0] == "pending"
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            done = await evaluate_tenant(conn, tenant, T0 + timedelta(minutes=9), ["webhook"])
            assert [s.transition for s in done.transitions] == ["firing"]
            raise RuntimeError("crash before commit")
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.alerts")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM callstore.alert_outbox")) == 0
    assert (await states(engine))[SALES][0] == "pending"
    for m in (9, 10):
        async with engine.begin() as conn:
            await evaluate_tenant(conn, tenant, T0 + timedelta(minutes=m), ["webhook"])
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.alerts")) == 1
        assert await conn.scalar(text("SELECT count(*) FROM callstore.alert_outbox WHERE kind = 'firing'")) == 1
        assert await conn.scalar(text("SELECT evaluated_at FROM callstore.alert_cursors WHERE tenant_id = 'default'")) == T0 + timedelta(minutes=10)


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """The command line installs its own log handler on the (captured) stderr; put things back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_backtest_command_prints_json(engine: AsyncEngine, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], tmp_path, cli_logging: None) -> None:  # type: ignore[no-untyped-def]
    from callstore.cli import main

    await setup(engine, make_settings())
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CALLSTORE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = await asyncio.to_thread(main, ["alerts", "backtest", "--from", "2026-11-16T09:00", "--to", "2026-11-16T09:46",
                                          "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    transitions = json.loads(out)
    assert [(t["tenant_id"], t["queue_id"], t["state"]) for t in transitions] == [
        ("default", SALES, "firing"), ("default", SALES, "resolved")]
    assert all(datetime.fromisoformat(t["at"]).utcoffset() == timedelta(hours=7) for t in transitions)

    # Thresholds can be tried on the past without changing the rules.
    code = await asyncio.to_thread(main, ["alerts", "backtest", "--from", "2026-11-16T09:00", "--to", "2026-11-16T09:46",
                                          "--format", "json", "--min-abandoned", "100"])
    assert code == 0 and json.loads(capsys.readouterr().out) == []

    for argv, word in ((["--from", "yesterday", "--to", "2026-11-16"], "--from"),
                       (["--from", "2026-11-16", "--to", "2026-11-15"], "--to"),
                       (["--from", "2026-11-16", "--to", "2026-11-17", "--floor-rate", "x"], "--floor-rate"),
                       (["--from", "2026-11-16", "--to", "2026-11-17", "--clear-rate", "0.5"], "--clear-rate")):
        code = await asyncio.to_thread(main, ["alerts", "backtest", *argv])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("callstore: error")]
        assert code == 2 and len(errors) == 1 and word in errors[0], (argv, errors)


async def test_rules_command_sets_overrides(engine: AsyncEngine, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], tmp_path, cli_logging: None) -> None:  # type: ignore[no-untyped-def]
    from callstore.cli import main
    from reports.alerts.rules import load_rules

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CALLSTORE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert await asyncio.to_thread(main, ["alerts", "rules", "set", "--min-offered", "20"]) == 0
    assert await asyncio.to_thread(main, ["alerts", "rules", "set", "--queue", "unassigned", "--floor-rate", "0.3"]) == 0
    assert await asyncio.to_thread(main, ["alerts", "rules", "set", "--queue", "7", "--enabled", "false"]) == 0
    assert await asyncio.to_thread(main, ["alerts", "rules", "set", "--queue", "7", "--clear-rate", "0.5"]) == 2
    assert "--clear-rate" in capsys.readouterr().err
    async with engine.connect() as conn:
        book = await load_rules(conn, "default")
    assert book.tenant.min_offered == 20
    assert book.for_queue(None).floor_rate == 0.3 and book.for_queue(None).min_offered == 20
    assert book.for_queue(7).enabled is False and book.for_queue(7).clear_rate == 0.1
    assert book.for_queue(8) == book.tenant
    assert await asyncio.to_thread(main, ["alerts", "rules", "clear", "--queue", "7"]) == 0
    assert await asyncio.to_thread(main, ["alerts", "rules", "clear", "--queue", "7"]) == 2
    assert await asyncio.to_thread(main, ["alerts", "list"]) == 0
    assert await asyncio.to_thread(main, ["alerts", "test"]) == 2  # no notifier configured
    assert "CALLSTORE_ALERT_WEBHOOK_URL" in capsys.readouterr().err


async def test_rate_oscillating_around_the_floor_fires_once_and_does_not_flap(engine: AsyncEngine) -> None:
    from reports.alerts.evaluate import replay
    from reports.alerts.rules import load_rules

    settings = make_settings()
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    # A new queue (no history: the floor alone decides), 4 calls a minute; abandons come in waves:
    # 2 a minute for 5 minutes, then none for 5. The 15-minute rate swings between 17 % and 33 %.
    calls, start = [], T0 - timedelta(minutes=15)
    for m in range(0, 100):
        for j in range(4):
            abandoned = (m % 10) < 5 and j < 2
            calls.append(Call(f"osc-{m}-{j}", 201, start + timedelta(minutes=m, seconds=15 * j),
                              "abandoned" if abandoned else "answered", 40 if abandoned else 10))
    await insert_calls(engine, calls)
    tenant = settings.tenant("default")
    times = [T0 + timedelta(minutes=m) for m in range(0, 80)]
    async with engine.connect() as conn:
        steps, _ = await replay(conn, "default", tenant.zone, await load_rules(conn, "default"), {}, times)
    rates = [s.verdict.figures.abandon_rate for s in steps if s.queue_id == 201]
    crossings = sum((a > 0.2) != (b > 0.2) for a, b in zip(rates, rates[1:]))  # type: ignore[operator]
    assert crossings >= 8  # it really does go back and forth across the threshold
    assert [s.transition for s in steps if s.transition] == ["firing"]
    # The live job over the same minutes agrees.
    for at in times:
        await run_alerts(engine, settings, now=at)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.alerts")) == 1
        assert await conn.scalar(text("SELECT state FROM callstore.alert_states WHERE queue_id = 201")) == "firing"


async def test_alerts_test_command_reaches_each_notifier(monkeypatch: pytest.MonkeyPatch, tmp_path,  # type: ignore[no-untyped-def]
                                                         capsys: pytest.CaptureFixture[str], cli_logging: None) -> None:
    from callstore.cli import main

    inbox = Inbox()
    async with serving(inbox.app()) as url:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("CALLSTORE_ALERT_WEBHOOK_URL", f"{url}/hook")
        monkeypatch.setenv("CALLSTORE_ALERT_WEBHOOK_SECRET", SECRET)
        monkeypatch.setenv("CALLSTORE_ALERT_SLACK_URL", f"{url}/slack")
        assert await asyncio.to_thread(main, ["alerts", "test"]) == 0
        assert capsys.readouterr().out.splitlines() == ["slack: sent", "webhook: sent"]
        inbox.fail_next = 10
        assert await asyncio.to_thread(main, ["alerts", "test"]) == 1
        assert "webhook: failed: webhook: HTTP 503" in capsys.readouterr().out
    [(headers, body)] = inbox.webhook
    verify_standard_webhook(SECRET, headers, body)
    assert json.loads(body)["type"] == "abandon_spike.test" and len(inbox.slack) == 2


async def test_the_scheduler_says_once_at_start_when_alerts_notify_nobody(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace as _replace

    from callstore.scheduler import Scheduler
    from reports.alerts.job import alerts_job
    from tests.conftest import test_settings

    quiet = test_settings()
    loud = _replace(quiet, alert_slack_url="https://hooks.slack.example/services/T/B/secret-part")
    assert alerts_job(loud).notice is None
    for settings, expected in ((quiet, 1), (loud, 0)):
        caplog.clear()
        scheduler = Scheduler(engine, settings, [alerts_job(settings)])
        with caplog.at_level(logging.WARNING, logger="callstore.scheduler"):
            scheduler.start()
            scheduler.shutdown()
        said = [r.getMessage() for r in caplog.records if "no notifier is configured" in r.getMessage()]
        assert len(said) == expected, said
