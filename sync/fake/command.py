"""``callstore fake-alohub serve|send``: argparse wiring for the fake Alohub.

Options are read as text and checked here, so a bad value gives one line
naming the option and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import date, datetime, timedelta
from types import FrameType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import orjson

from sync.fake.history import CURVES, DEFAULT_TZ, FakeCall, generate_calls
from sync.fake.mp3 import DEFAULT_MEDIA_SIZE
from sync.fake.sender import events_for, send_events
from sync.fake.server import serve_forever
from sync.fake.state import DEFAULT_MAX_LIMIT, build_state

DEFAULT_PORT = 8081
DEFAULT_API_KEY = "fake-api-key"
#: Calls in progress when the window ends now: enough for "calls waiting now" to show.
DEFAULT_LIVE = 6


class UsageError(ValueError):
    """A bad option value; the message names the option."""


def _whole(args: argparse.Namespace, name: str, minimum: int = 0) -> int:
    raw = getattr(args, name)
    option = "--" + name.replace("_", "-")
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{option} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{option} must be >= {minimum}, got {value}")
    return value


def _fraction(args: argparse.Namespace, name: str) -> float:
    raw = getattr(args, name)
    option = "--" + name.replace("_", "-")
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{option} must be a number between 0 and 1, got {raw!r}") from None
    if not 0 <= value <= 1:
        raise UsageError(f"{option} must be between 0 and 1, got {raw!r}")
    return value


def _zone(args: argparse.Namespace) -> ZoneInfo:
    try:
        return ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz is not a known time zone: {args.tz!r}") from None


def _moment(raw: str | None, option: str, zone: ZoneInfo) -> datetime | None:
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=zone)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"{option} must be an ISO 8601 date or date-time, got {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _window(args: argparse.Namespace, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """--since/--until; by default the 24 hours up to the current minute."""
    until = _moment(args.until, "--until", zone)
    if until is None:
        until = datetime.now(zone).replace(second=0, microsecond=0)
    since = _moment(args.since, "--since", zone) or until - timedelta(days=1)
    if since >= until:
        raise UsageError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return since, until


def _running(args: argparse.Namespace, until: datetime) -> tuple[datetime | None, int]:
    """The fake's "now" and how many live calls it adds.

    A window that ends now (no --until) has calls in progress, like a real
    contact center; a window given in full stays a fixed, finished history
    unless --live asks otherwise.
    """
    if args.live is None:
        return (until, DEFAULT_LIVE) if args.until is None else (None, 0)
    live = _whole(args, "live")
    return (until if live or args.until is None else None), live


def _add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", default="1000", help="number of generated calls (default 1000)")
    parser.add_argument("--seed", default="1", help="random seed; the same seed and window give the same calls")
    parser.add_argument("--since", help="first call start, ISO 8601 (default: 24 hours before --until)")
    parser.add_argument("--until", help="end of the call window, ISO 8601 (default: now)")
    parser.add_argument("--tz", default=DEFAULT_TZ, help=f"zone of Alohub's local times (default {DEFAULT_TZ})")
    parser.add_argument("--curve", default="diurnal", choices=CURVES,
                        help="how calls spread over the day: diurnal (busy 8-11 and 14-17 local, quiet at night; "
                             "the default) or flat")
    parser.add_argument("--live", help="calls still running at the end of the window, started in its last "
                                       f"5 minutes (default {DEFAULT_LIVE} when --until is not given, else 0)")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    _add_history_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", default=str(DEFAULT_PORT), help=f"listen port, 0 for any (default {DEFAULT_PORT})")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send")
    parser.add_argument("--tenant-id", help="if set, an X-Tenant-ID header must equal it")
    parser.add_argument("--media-size", default=str(DEFAULT_MEDIA_SIZE), help="bytes per recording")
    parser.add_argument("--no-media-auth", action="store_true", help="serve recordings without Authorization")
    parser.add_argument("--max-limit", default=str(DEFAULT_MAX_LIMIT), help="largest page the server returns")
    parser.add_argument("--tenant-limit", default="0", help="requests per 10 s for the tenant, 0 = unlimited")
    parser.add_argument("--route-limit", default="0", help="requests per 10 s per route, 0 = unlimited")
    parser.add_argument("--error-rate", default="0", help="fraction of API requests answered 500")
    parser.add_argument("--rate429", default="0", help="fraction of API requests answered 429")
    parser.add_argument("--latency-ms", default="0", help="delay added to every API request")
    parser.add_argument("--campaigns", default="0",
                        help="outbound campaigns (ids from 1042) whose contacts extra outbound calls dial")


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    _add_history_arguments(parser)
    parser.add_argument("--url", required=True, help="the receiver's webhook URL")
    parser.add_argument("--key", required=True, help="the Authorization value the receiver expects")
    parser.add_argument("--fake", help="base URL of a running fake: send the calls it serves")
    parser.add_argument(
        "--media-base", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="scheme and host of recording URLs"
    )
    parser.add_argument("--concurrency", default="8", help="requests in flight (default 8)")
    parser.add_argument("--drop", default="0", help="fraction of calls whose events are never sent")
    parser.add_argument("--duplicate", default="0", help="fraction of events sent twice")
    parser.add_argument("--no-reorder", action="store_true", help="keep each call's events in order")
    parser.add_argument("--deadline", default="300", help="seconds before giving up on unsent events")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` and ``send`` subcommands to the ``fake-alohub`` parser."""
    commands = parser.add_subparsers(dest="fake_command", required=True, metavar="{serve,send}")
    add_serve_arguments(commands.add_parser("serve", help="run a fake Alohub HTTP server"))
    add_send_arguments(commands.add_parser("send", help="send webhook events to a receiver"))


def _serve(args: argparse.Namespace) -> int:
    zone = _zone(args)
    since, until = _window(args, zone)
    now, live = _running(args, until)
    state = build_state(
        calls=_whole(args, "calls"),
        curve=args.curve,
        now=now,
        live=live,
        seed=_whole(args, "seed"),
        since=since,
        until=until,
        api_key=args.api_key,
        tenant_id=args.tenant_id,
        media_size=_whole(args, "media_size"),
        max_limit=_whole(args, "max_limit", minimum=1),
        tenant_limit=_whole(args, "tenant_limit"),
        route_limit=_whole(args, "route_limit"),
        error_rate=_fraction(args, "error_rate"),
        rate429=_fraction(args, "rate429"),
        latency_ms=_whole(args, "latency_ms"),
        tz=args.tz,
        media_auth=not args.no_media_auth,
        campaigns=_whole(args, "campaigns"),
    )
    port = _whole(args, "port")
    if port > 65535:
        raise UsageError(f"--port must be at most 65535, got {port}")

    def ready(base_url: str) -> None:
        print(f"fake Alohub serving {len(state.calls)} calls ({since} to {until}) on {base_url}", flush=True)

    # uvicorn stops gracefully on SIGTERM, then raises the signal again to
    # exit as if killed (143). With this no-op handler installed first, that
    # re-raise does nothing: a requested stop ends with exit code 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        asyncio.run(serve_forever(state, args.host, port, ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"callstore fake-alohub serve: cannot listen on {args.host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do."""


def _calls_to_send(args: argparse.Namespace) -> tuple[list[FakeCall], str]:
    if args.fake:
        base = args.fake.rstrip("/")
        try:
            response = httpx.get(f"{base}/_fake/calls", timeout=30, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise UsageError(f"--fake: cannot read {base}/_fake/calls: {exc}") from None
        return [FakeCall.from_record(record) for record in response.json()], base
    zone = _zone(args)
    since, until = _window(args, zone)
    now, live = _running(args, until)
    calls = generate_calls(_whole(args, "calls"), seed=_whole(args, "seed"), start=since, end=until, tz=args.tz,
                           curve=args.curve, now=now, live=live)
    return calls, args.media_base


def _send(args: argparse.Namespace) -> int:
    concurrency = _whole(args, "concurrency", minimum=1)
    drop = _fraction(args, "drop")
    duplicate = _fraction(args, "duplicate")
    deadline = _whole(args, "deadline", minimum=1)
    seed = _whole(args, "seed")
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be an http:// or https:// URL, got {args.url!r}")
    calls, media_base = _calls_to_send(args)
    report = asyncio.run(
        send_events(
            args.url,
            args.key,
            events_for(calls, media_base),
            concurrency=concurrency,
            drop=drop,
            duplicate=duplicate,
            reorder=not args.no_reorder,
            seed=seed,
            deadline_s=deadline,
        )
    )
    print(orjson.dumps(report.summary()).decode())
    return 0 if not report.unacknowledged and not report.gave_up else 1


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; 0 success, 1 runtime failure, 2 bad option value."""
    command = getattr(args, "fake_command", None)
    try:
        if command == "serve":
            return _serve(args)
        if command == "send":
            return _send(args)
    except UsageError as exc:
        print(f"callstore fake-alohub {command}: {exc}", file=sys.stderr)
        return 2
    print("callstore fake-alohub: choose a subcommand, serve or send", file=sys.stderr)
    return 2
