"""`callstore demo`: a fake Alohub and callstore wired together, filled with a day of calls.

One process runs everything: the fake Alohub (a background thread), the
service exactly as `callstore serve` runs it (embedded PostgreSQL, webhook,
API, jobs), then fills it the two ways Alohub does: the fake sends the day's
calls by webhook (losing some on purpose), and a backfill of the day reads
the call history and brings in what the webhook lost. It keeps serving until
Ctrl-C or SIGTERM, so reports, the API and BI tools can be tried on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from callstore.commands.serve import serve
from callstore.runtime import UsageError, database, run_async
from store.embedded import EmbeddedPostgres
from store.errors import ConfigError
from store.settings import DEFAULT_TENANT, Settings, TenantSettings
from sync.backfill import backfill
from sync.client import AlohubClient, new_http_client
from sync.fake import FakeCall, build_state, events_for, run_server, send_events
from sync.fake.state import FakeState
from sync.ratelimit import RateLimits
from sync.schedule import sync_all_queues
from sync.sources import Window, history_source

DEFAULT_CALLS = 2000
DEFAULT_FAKE_PORT = 8081
#: Calls still running when the demo starts: "calls waiting now" has something to show.
LIVE_CALLS = 6
#: Share of calls whose webhooks are never sent: the backfill finds them.
WEBHOOK_LOSS = 0.1
READY_TIMEOUT_S = 120.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="run a fake Alohub and callstore together, filled with the last 24 hours of calls",
        description="Starts a fake Alohub and callstore (embedded PostgreSQL in CALLSTORE_DATA_DIR), sends the "
                    "last 24 hours of calls by webhook, backfills the same day, then serves until Ctrl-C.",
    )
    p.add_argument("--port", help="callstore's port (default CALLSTORE_PORT, 8080)")
    p.add_argument("--fake-port", default=str(DEFAULT_FAKE_PORT),
                   help=f"the fake Alohub's port (default {DEFAULT_FAKE_PORT})")
    p.add_argument("--calls", default=str(DEFAULT_CALLS), help=f"calls in the day (default {DEFAULT_CALLS})")
    p.add_argument("--seed", default="1", help="random seed of the fake's calls (default 1)")
    p.set_defaults(func=_run)


def _port(value: str, arg: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise UsageError(f"{arg}: {value!r} is not a port number") from None
    if not 0 < port <= 65535:
        raise UsageError(f"{arg}: must be between 1 and 65535")
    return port


def _whole(value: str, arg: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{arg}: {value!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise UsageError(f"{arg}: must be between {lo} and {hi}")
    return n


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url is not None:
        # A demo writes invented calls: never into a database someone else uses.
        raise ConfigError("DATABASE_URL", "callstore demo uses its own embedded database: unset DATABASE_URL "
                                          "and choose a CALLSTORE_DATA_DIR for it")
    port = _port(args.port, "--port") if args.port is not None else settings.port
    fake_port = _port(args.fake_port, "--fake-port")
    if fake_port == port:
        raise UsageError("--fake-port: must differ from callstore's port")
    calls = _whole(args.calls, "--calls", 1, 1_000_000)
    seed = _whole(args.seed, "--seed", 0, 2**31)
    zone_name = settings.tenants[0].timezone
    until = datetime.now(ZoneInfo(zone_name)).replace(second=0, microsecond=0)
    since = until - timedelta(days=1)
    state = build_state(calls=calls, seed=seed, since=since, until=until, api_key="fake-" + secrets.token_hex(8),
                        tz=zone_name, now=until, live=LIVE_CALLS)
    try:
        fake = run_server(state, "127.0.0.1", fake_port)
    except OSError as exc:
        raise UsageError(f"--fake-port: cannot listen on 127.0.0.1:{fake_port}: {exc.strerror}") from None
    with fake:
        tenant = TenantSettings(
            DEFAULT_TENANT, webhook_keys=("demo-" + secrets.token_hex(12),), api_url=f"{fake.base_url}/api",
            xapi_url=fake.base_url, api_key=state.api_key, timezone=zone_name, media_url=fake.base_url,
            media_hosts=("127.0.0.1",),
        )
        demo_settings = replace(settings, host="127.0.0.1", port=port, tenants=(tenant,))
        run_async(_demo(demo_settings, state, fake.base_url, Window(since, until)))
    return 0


async def _demo(settings: Settings, state: FakeState, fake_url: str, window: Window) -> None:
    service = asyncio.create_task(serve(settings, "all"), name="serve")
    fill = asyncio.create_task(_fill(settings, state, fake_url, window), name="fill")
    done, _ = await asyncio.wait({service, fill}, return_when=asyncio.FIRST_COMPLETED)
    if fill not in done:
        # The service stopped (SIGTERM, Ctrl-C, or it failed) before the day was in.
        fill.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fill
        await service
        return
    if fill.exception() is not None:
        # Stop the service the way an operator would, so it shuts down cleanly
        # (spool, jobs, embedded PostgreSQL), then report why the demo failed.
        signal.raise_signal(signal.SIGTERM)
        await service
        fill.result()
    await service


async def _fill(settings: Settings, state: FakeState, fake_url: str, window: Window) -> None:
    tenant = settings.tenants[0]
    base = f"http://127.0.0.1:{settings.port}"
    await _wait_ready(base)
    calls = [FakeCall.from_record(r) for r in state.calls.records]
    sent = await send_events(f"{base}/webhooks/alohub", tenant.webhook_keys[0], events_for(calls, fake_url),
                             drop=WEBHOOK_LOSS, duplicate=0.02, seed=1)
    print(f"webhook: {len(sent.acknowledged)} events of {len(calls)} calls acknowledged; "
          f"{len(sent.dropped_call_ids)} calls never sent (the backfill finds them)", flush=True)
    limits = RateLimits()
    async with database(settings) as engine:
        await sync_all_queues(engine, settings, limits)
        async with new_http_client() as http:
            source = history_source(settings.history_source, AlohubClient(http, tenant, limits=limits))
            report = await backfill(engine, tenant, source, window)
    print(report.summary(), flush=True)
    _print_ready(settings, len(calls), window)


async def _wait_ready(base: str) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"callstore did not become ready at {base} in {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.2)


def _print_ready(settings: Settings, calls: int, window: Window) -> None:
    pg_port = EmbeddedPostgres(settings.data_dir).port
    zone = ZoneInfo(settings.tenants[0].timezone)
    day = window.end.astimezone(zone).date()
    lines = [
        "",
        (f"callstore demo ready: {calls} calls from {window.start.astimezone(zone):%Y-%m-%d %H:%M} "
         f"to {window.end.astimezone(zone):%Y-%m-%d %H:%M} ({zone.key})"),
        f"  callstore   http://127.0.0.1:{settings.port}  (webhook /webhooks/alohub, API /api, /metrics)",
        f"  data        {settings.data_dir.resolve()}",
        f"  PostgreSQL  127.0.0.1 port {pg_port}, database callstore",
        "In another terminal, with the same CALLSTORE_DATA_DIR:",
        f"  callstore report queues --from {day - timedelta(days=1)} --interval hour",
        "  BI_PASSWORD=demo-only callstore report bi-role --name bi_reader --password-env BI_PASSWORD",
        f"  PGPASSWORD=demo-only psql -h 127.0.0.1 -p {pg_port} -U bi_reader -d callstore",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)
