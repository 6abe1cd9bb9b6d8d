"""`callstore report queues|thresholds|rebuild|refresh|bi-role`."""

from __future__ import annotations

import argparse
import sys

from callstore.runtime import UsageError, database, parse_when, run_async
from reports.bi_role import ensure_bi_role, valid_role_name
from reports.campaign_report import campaign_report
from reports.campaigns import rebuild_campaigns
from reports.queries import FORMATS, InvalidParameter, queue_report
from reports.rollups import rebuild_rollups, refresh_rollups
from reports.thresholds import list_thresholds, set_thresholds
from store.settings import Settings, secret_from_env


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="queue reports, thresholds, rollups, the BI role")
    rsub = p.add_subparsers(dest="report_command", required=True)

    q = rsub.add_parser("queues", help="service level, abandoned and serviced figures per queue and bucket")
    q.add_argument("--from", dest="from_", required=True, help="ISO 8601; without offset in the tenant's zone")
    q.add_argument("--to", help="exclusive end, ISO 8601 (default now)")
    q.add_argument("--interval", choices=("15m", "hour", "day"), default="hour")
    q.add_argument("--queue", help="queue id (Alohub callinId) or 'unassigned' (default all)")
    q.add_argument("--tenant", help="tenant id (required when several are configured)")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=_queues)

    c = rsub.add_parser("campaigns", help="outbound campaign figures per campaign and local day")
    c.add_argument("--from", dest="from_", required=True, help="first local day, ISO 8601 date")
    c.add_argument("--to", help="exclusive end day (default: tomorrow)")
    c.add_argument("--campaign", help="one campaign id (default all followed)")
    c.add_argument("--tenant", help="tenant id (required when several are configured)")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table")
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
    b.set_defaults(func=_bi_role)


def _tenant(settings: Settings, tenant: str | None) -> str:
    ids = [t.tenant_id for t in settings.tenants]
    if tenant is None:
        if len(ids) != 1:
            raise UsageError(f"--tenant: several tenants are configured; name one of {', '.join(ids)}")
        return ids[0]
    if tenant not in ids:
        raise UsageError(f"--tenant: unknown tenant {tenant!r}; configured: {', '.join(ids)}")
    return tenant


def _queue(value: str) -> int | None:
    if value == "unassigned":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--queue: {value!r} is not a queue id or 'unassigned'") from None


def _queues(args: argparse.Namespace, settings: Settings) -> int:
    params = {"from": args.from_, "to": args.to, "interval": args.interval, "queue": args.queue,
              "tenant": args.tenant, "format": args.format}

    async def go() -> bytes:
        async with database(settings) as engine:
            return (await queue_report(engine, settings, params))[1]

    try:
        body = run_async(go())
    except InvalidParameter as exc:
        raise UsageError(f"--{exc}") from None
    sys.stdout.write(body.decode())
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def _campaigns(args: argparse.Namespace, settings: Settings) -> int:
    params = {"from": args.from_, "to": args.to, "campaign": args.campaign, "tenant": args.tenant,
              "format": args.format}

    async def go() -> bytes:
        async with database(settings) as engine:
            return (await campaign_report(engine, settings, params))[1]

    try:
        body = run_async(go())
    except InvalidParameter as exc:
        raise UsageError(f"--{exc}") from None
    sys.stdout.write(body.decode())
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def _thresholds_set(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _tenant(settings, args.tenant)
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
    scope = f"from {since.isoformat()}" if since else "for all history"
    print(f"version {version}: queue {args.queue} of {tenant}: sla {args.sla_seconds}s, "
          f"short abandon {args.short_abandon_seconds}s {scope}; rollups recomputed")
    return 0


def _thresholds_list(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _tenant(settings, args.tenant) if args.tenant else None

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            versions = await list_thresholds(conn, tenant)
        print(f"{'id':>4}  {'tenant':<12}  {'queue':>10}  {'valid from':<25}  {'sla':>4}  {'short':>5}  {'recorded':<19}  note")
        for v in versions:
            since = v.valid_from.isoformat() if v.valid_from else "(all history)"
            queue = "unassigned" if v.queue_id is None else str(v.queue_id)
            print(f"{v.id:>4}  {v.tenant_id:<12}  {queue:>10}  {since:<25}  {v.sla_seconds:>4}  "
                  f"{v.short_abandon_seconds:>5}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.note}")
        print("queues without a version use sla 20s, short abandon 5s")

    run_async(go())
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> float:
        async with database(settings) as engine, engine.begin() as conn:
            seconds = await rebuild_rollups(conn)
            return seconds + (await rebuild_campaigns(conn)).seconds

    print(f"rollups rebuilt in {run_async(go()):.1f} s")
    return 0


def _refresh(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> tuple[int, float]:
        async with database(settings) as engine, engine.begin() as conn:
            r = await refresh_rollups(conn)
            return r.buckets_15m, r.seconds

    n, seconds = run_async(go())
    print(f"{n} 15-minute buckets recomputed in {seconds:.2f} s")
    return 0


def _bi_role(args: argparse.Namespace, settings: Settings) -> int:
    if not valid_role_name(args.name):
        raise UsageError("--name: lower-case letters, digits and _ (not starting with pg_)")
    password = secret_from_env(args.password_env)
    if not password:
        raise UsageError(f"--password-env: the environment variable {args.password_env} is not set or empty")

    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            return await ensure_bi_role(conn, args.name, password)

    created = run_async(go())
    print(f"role {args.name} {'created' if created else 'updated'}: read-only, schema analytics")
    return 0
