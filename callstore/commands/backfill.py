"""`callstore backfill --since --until [--tenant] [--source]`: page any range of call history into the store."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timedelta, timezone

from callstore.runtime import UsageError, database, parse_when, run_async
from store.errors import ConfigError
from store.settings import Settings, TenantSettings
from sync.backfill import Options, RunReport, backfill
from sync.client import AlohubClient, new_http_client
from sync.ratelimit import RateLimits
from sync.sources import SOURCES, Window, history_source, missing_settings

log = logging.getLogger("callstore.backfill")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("backfill", help="page Alohub's call history over a time range into the store")
    p.add_argument("--since", required=True, help="start, ISO 8601 date or date-time (tenant zone if no offset)")
    p.add_argument("--until", help="end, exclusive (default: now)")
    p.add_argument("--tenant", help="one tenant id (default: every tenant with API settings)")
    p.add_argument("--source", help="searchCallV2 or call-logs (default: CALLSTORE_HISTORY_SOURCE)")
    p.add_argument("--concurrency", default="8", help="requests in flight at once (default 8)")
    p.add_argument("--limit", default="100", help="records asked per page (default 100)")
    p.add_argument("--chunk-hours", default="24", help="hours per paged window (default 24)")
    p.set_defaults(func=_run)


def _whole(value: str, arg: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{arg}: {value!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise UsageError(f"{arg}: must be between {lo} and {hi}")
    return n


def plan(args: argparse.Namespace, settings: Settings) -> tuple[list[tuple[TenantSettings, Window]], str, Options]:
    """Check the arguments; one UsageError (or ConfigError) naming the bad one."""
    source = args.source or settings.history_source
    if source not in SOURCES:
        raise UsageError(f"--source: must be one of {', '.join(SOURCES)}")
    options = Options(
        concurrency=_whole(args.concurrency, "--concurrency", 1, 64),
        limit=_whole(args.limit, "--limit", 1, 10_000),
        chunk=timedelta(hours=_whole(args.chunk_hours, "--chunk-hours", 1, 24 * 366)),
    )
    if args.tenant is not None:
        try:
            tenants = [settings.tenant(args.tenant)]
        except KeyError:
            known = ", ".join(t.tenant_id for t in settings.tenants)
            raise UsageError(f"--tenant: no tenant {args.tenant!r} (configured: {known})") from None
    else:
        tenants = list(settings.tenants)
    ready = []
    for t in tenants:
        why = missing_settings(source, bool(t.api_url), bool(t.api_key))
        if why is None:
            ready.append(t)
        elif args.tenant is not None or len(tenants) == 1:
            raise ConfigError(f"tenant {t.tenant_id!r}", f"cannot backfill from {source}: {why}")
    if not ready:
        raise ConfigError("tenants", f"none has the API settings {source} needs (ALOHUB_API_KEY, ALOHUB_API_URL)")
    plans = []
    for t in ready:
        since = parse_when(args.since, t.timezone, "--since")
        until = parse_when(args.until, t.timezone, "--until") if args.until else datetime.now(timezone.utc)
        since, until = since.replace(microsecond=0), until.replace(microsecond=0)
        if until <= since:
            raise UsageError("--until: must be after --since")
        # In the tenant's zone, so that the summary reads in local time (the instants are the same).
        plans.append((t, Window(since.astimezone(t.zone), until.astimezone(t.zone))))
    return plans, source, options


def _run(args: argparse.Namespace, settings: Settings) -> int:
    plans, source, options = plan(args, settings)
    reports = run_async(_backfill_all(settings, plans, source, options))
    for r in reports:
        print(r.summary())
    return 0 if all(r.status == "ok" for r in reports) else 1


async def _backfill_all(settings: Settings, plans: list[tuple[TenantSettings, Window]], source_name: str,
                        options: Options) -> list[RunReport]:
    limits = RateLimits()
    reports = []
    async with database(settings) as engine, new_http_client() as http:
        for tenant, window in plans:
            source = history_source(source_name, AlohubClient(http, tenant, limits=limits))
            with ProgressDisplay(tenant.tenant_id) as display:
                reports.append(await backfill(engine, tenant, source, window, options=options,
                                              progress=display.update))
    return reports


class ProgressDisplay:
    """A tqdm bar on a terminal; otherwise a log line every few seconds."""

    LOG_EVERY_S = 5.0

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.bar = None
        self.last_log = 0.0

    def __enter__(self) -> ProgressDisplay:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="call", desc=f"backfill {self.tenant_id}", dynamic_ncols=True,
                            file=sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, r: RunReport) -> None:
        if self.bar is not None:
            total = max(r.announced, r.records)
            if self.bar.total != total:
                self.bar.total = total
            self.bar.n = r.records
            self.bar.set_postfix(new=r.tally.first_seen, changed=r.tally.changed,
                                 windows=f"{r.windows_done}/{r.windows}", refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self.last_log >= self.LOG_EVERY_S or r.status != "running":
            self.last_log = now
            log.info("backfill %s: %d/%d records, %d pages, windows %d/%d, first seen %d, changed %d",
                     self.tenant_id, r.records, max(r.announced, r.records), r.pages, r.windows_done, r.windows,
                     r.tally.first_seen, r.tally.changed)
