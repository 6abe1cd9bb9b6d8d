"""`callstore report queues|agents|thresholds|rebuild|refresh|bi-role`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from callstore.runtime import UsageError, database, one_tenant, parse_when, run_async
from reports.agent_report import agent_report
from reports.agent_rollups import rebuild_agent_rollups, refresh_agent_rollups
from reports.bi_role import (DEFAULT_CONNECTION_LIMIT, DEFAULT_STATEMENT_TIMEOUT_S, ensure_bi_role,
                             psql_command, valid_role_name)
from reports.campaign_report import campaign_report
from reports.campaigns import rebuild_campaigns
from reports.exports import printable
from reports.queries import FORMATS, INTERVALS, InvalidParameter, queue_report
from reports.rollups import rebuild_rollups, refresh_rollups
from reports.thresholds import list_thresholds, set_thresholds
from store.local_time import local_iso, tenant_zone
from store.settings import Settings, secret_from_env


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="queue and agent reports, thresholds, rollups, the BI role")
    rsub = p.add_subparsers(dest="report_command", required=True)

    q = rsub.add_parser("queues", help="service level, abandoned and answered calls per queue and period")
    q.add_argument("--from", dest="from_", required=True, help="ISO 8601; without offset in the tenant's zone")
    q.add_argument("--to", help="exclusive end, ISO 8601 (default now)")
    q.add_argument("--interval", type=str.lower, choices=INTERVALS, default="hour",
                   help="period of each row; weeks start on Monday, weeks and months are local (default hour)")
    q.add_argument("--queue", help="queue id (Alohub callinId), queue name or 'unassigned' (default all)")
    _common(q)
    q.set_defaults(func=_queues)

    a = rsub.add_parser("agents", help="answered and outbound calls, talk, hold and handle time per agent and day")
    a.add_argument("--from", dest="from_", required=True, help="first local day, ISO 8601")
    a.add_argument("--to", help="day after the last, ISO 8601 (default: tomorrow, so today is included)")
    a.add_argument("--agent", help="one agent's user name (default all)")
    _common(a)
    a.set_defaults(func=_agents)

    c = rsub.add_parser("campaigns", help="outbound campaign figures per campaign and local day")
    c.add_argument("--from", dest="from_", required=True, help="first local day, ISO 8601 date")
    c.add_argument("--to", help="exclusive end day (default: tomorrow)")
    c.add_argument("--campaign", help="one campaign id (default all followed)")
    c.add_argument("--tenant", help="tenant id (required when several are configured)")
    c.add_argument("--format", type=str.lower, choices=("table", "csv", "json"), default="table")
    c.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    c.set_defaults(func=_campaigns)

    t = rsub.add_parser("thresholds", help="per-queue sla_seconds / short_abandon_seconds (versioned)")
    tsub = t.add_subparsers(dest="thresholds_command", required=True)
    s = tsub.add_parser("set", help="record a new version; history is recomputed")
    s.add_argument("--queue", required=True, help="queue id or 'unassigned'")
    s.add_argument("--sla-seconds", type=int, required=True)
    s.add_argument("--short-abandon-seconds", type=int, required=True)
    s.add_argument("--from", dest="from_", help="applies to calls started from then (default: all history)")
    s.add_argument("--tenant")
    s.add_argument("--note", default="")
    s.set_defaults(func=_thresholds_set)
    ls = tsub.add_parser("list", help="every version recorded")
    ls.add_argument("--tenant")
    ls.set_defaults(func=_thresholds_list)

    rb = rsub.add_parser("rebuild", help="recompute every rollup (queues and campaigns) from callstore.calls")
    rb.set_defaults(func=_rebuild)
    rf = rsub.add_parser("refresh", help="recompute the buckets of calls changed since the last refresh")
    rf.set_defaults(func=_refresh)

    b = rsub.add_parser("bi-role", help="create or update a read-only role that sees schema analytics only")
    b.add_argument("--name", required=True)
    b.add_argument("--password-env", required=True, metavar="VAR", help="environment variable holding the password")
    b.add_argument("--statement-timeout", type=int, default=DEFAULT_STATEMENT_TIMEOUT_S, metavar="SECONDS",
                   help=f"default statement_timeout of its sessions (default {DEFAULT_STATEMENT_TIMEOUT_S})")
    b.add_argument("--connection-limit", type=int, default=DEFAULT_CONNECTION_LIMIT, metavar="N",
                   help=f"most connections it may open at once (default {DEFAULT_CONNECTION_LIMIT})")
    b.add_argument("--timezone", metavar="ZONE",
                   help="its sessions' time zone (default: the tenant's; required when tenants' zones differ)")
    b.set_defaults(func=_bi_role)


def _queue(value: str) -> int | None:
    if value == "unassigned":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--queue: {value!r} is not a queue id or 'unassigned'") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", help="tenant id (required when several are configured)")
    p.add_argument("--format", type=str.lower, choices=FORMATS, default="table",
                   help="table (with totals and a legend), csv, json or xlsx (default table)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of the terminal")


Report = Callable[..., Awaitable[tuple[str, bytes]]]


def _write_report(args: argparse.Namespace, settings: Settings, report: Report, params: Mapping[str, str | None]) -> int:
    if args.format == "xlsx" and args.output is None and sys.stdout.isatty():
        raise UsageError("--output: an xlsx workbook is binary; name a file, e.g. --output report.xlsx")

    async def go() -> bytes:
        async with database(settings) as engine:
            return (await report(engine, settings, params))[1]

    try:
        body = run_async(go())
    except InvalidParameter as exc:
        raise UsageError(f"--{exc}") from None
    if args.format == "json":
        body += b"\n"
    if args.output is not None:
        try:
            args.output.write_bytes(body)
        except OSError as exc:
            raise UsageError(f"--output: cannot write {args.output}: {exc.strerror}") from None
        print(f"report written to {args.output}")
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    return 0


def _queues(args: argparse.Namespace, settings: Settings) -> int:
    params = {"from": args.from_, "to": args.to, "interval": args.interval, "queue": args.queue,
              "tenant": args.tenant, "format": args.format}
    return _write_report(args, settings, queue_report, params)


def _agents(args: argparse.Namespace, settings: Settings) -> int:
    params = {"from": args.from_, "to": args.to, "agent": args.agent, "tenant": args.tenant, "format": args.format}
    return _write_report(args, settings, agent_report, params)


def _campaigns(args: argparse.Namespace, settings: Settings) -> int:
    params = {"from": args.from_, "to": args.to, "campaign": args.campaign, "tenant": args.tenant,
              "format": args.format}
    return _write_report(args, settings, campaign_report, params)


def _thresholds_set(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id
    queue = _queue(args.queue)
    since = parse_when(args.from_, settings.tenant(tenant).timezone, "--from") if args.from_ else None
    if args.sla_seconds < 0:
        raise UsageError("--sla-seconds: whole seconds >= 0")
    if args.short_abandon_seconds < 0:
        raise UsageError("--short-abandon-seconds: whole seconds >= 0")

    async def go() -> int:
        async with database(settings) as engine:
            async with engine.begin() as conn:
                version = await set_thresholds(conn, tenant, queue, sla_seconds=args.sla_seconds,
                                               short_abandon_seconds=args.short_abandon_seconds,
                                               valid_from=since, note=args.note)
            async with engine.begin() as conn:
                await refresh_rollups(conn)
            return version

    version = run_async(go())
    scope = f"from {local_iso(since, settings.tenant(tenant).zone)}" if since else "for all history"
    print(f"version {version}: queue {args.queue} of {tenant}: sla {args.sla_seconds}s, "
          f"short abandon {args.short_abandon_seconds}s {scope}; rollups recomputed")
    return 0


def _thresholds_list(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id if args.tenant else None

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            versions = await list_thresholds(conn, tenant)
        print(f"{'id':>4}  {'tenant':<12}  {'queue':>10}  {'valid from':<25}  {'sla':>4}  {'short':>5}  {'recorded':<25}  note")
        for v in versions:
            zone = tenant_zone(settings.tenants, v.tenant_id)
            since = local_iso(v.valid_from, zone) if v.valid_from else "(all history)"
            queue = "unassigned" if v.queue_id is None else str(v.queue_id)
            print(f"{v.id:>4}  {v.tenant_id:<12}  {queue:>10}  {since:<25}  {v.sla_seconds:>4}  "
                  f"{v.short_abandon_seconds:>5}  {local_iso(v.created_at, zone):<25}  {printable(v.note)}")
        print("queues without a version use sla 20s, short abandon 5s")

    run_async(go())
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> float:
        async with database(settings, command_timeout=None) as engine, engine.begin() as conn:
            seconds = await rebuild_rollups(conn) + await rebuild_agent_rollups(conn)
            return seconds + (await rebuild_campaigns(conn)).seconds

    print(f"rollups rebuilt in {run_async(go()):.1f} s")
    return 0


def _refresh(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> tuple[int, int, float]:
        async with database(settings) as engine, engine.begin() as conn:
            r = await refresh_rollups(conn)
            a = await refresh_agent_rollups(conn)
            return r.buckets_15m, a.agent_days, r.seconds + a.seconds

    n, days, seconds = run_async(go())
    print(f"{n} 15-minute queue buckets and {days} agent-days recomputed in {seconds:.2f} s")
    return 0


def _bi_role(args: argparse.Namespace, settings: Settings) -> int:
    if not valid_role_name(args.name):
        raise UsageError("--name: lower-case letters, digits and _ (not starting with pg_)")
    password = secret_from_env(args.password_env)
    if not password:
        raise UsageError(f"--password-env: the environment variable {args.password_env} is not set or empty")
    if args.statement_timeout < 1:
        raise UsageError("--statement-timeout: whole seconds >= 1")
    if args.connection_limit < 1:
        raise UsageError("--connection-limit: at least 1")
    zone = args.timezone or _bi_zone(settings)

    async def go() -> tuple[bool, str]:
        async with database(settings) as engine:
            async with engine.begin() as conn:
                created = await ensure_bi_role(conn, args.name, password, statement_timeout_s=args.statement_timeout,
                                               connection_limit=args.connection_limit, timezone=zone)
            return created, psql_command(engine.url, args.name)

    try:
        created, psql = run_async(go())
    except ValueError as exc:
        name, _, detail = str(exc).partition(": ")
        raise UsageError(f"--{name.replace(' ', '-')}: {detail}") from None
    print(f"role {args.name} {'created' if created else 'updated'}: read-only, schema analytics; "
          f"statement timeout {args.statement_timeout} s, at most {args.connection_limit} connections, "
          f"time zone {zone}")
    print(f"connect with: {psql}")
    print(f"password: the value of ${args.password_env} (callstore does not store it)")
    return 0


def _bi_zone(settings: Settings) -> str:
    """The tenants' zone; several tenants in different zones must name one."""
    zones = sorted({t.timezone for t in settings.tenants})
    if len(zones) == 1:
        return zones[0]
    raise UsageError(f"--timezone: the tenants are in different time zones ({', '.join(zones)}); name the one "
                     "BI sessions should use")
