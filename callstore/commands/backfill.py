"""`callstore backfill --since --until [--tenant] [--source]`: page any range of call history into the store."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from datetime import datetime, timedelta, timezone

from callstore.runtime import UsageError, database, parse_when, run_async
from store.errors import ConfigError
from store.logs import lines_above
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
    p.add_argument("--restart", action="store_true",
                   help="fetch the whole range, even if an earlier run of it stopped early (default: resume after "
                        "the windows that run stored)")
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
    reports = run_async(_backfill_all(settings, plans, source, options, resume=not args.restart))
    for r in reports:
        print(r.summary())
    return 0 if all(r.status == "ok" for r in reports) else 1


async def _backfill_all(settings: Settings, plans: list[tuple[TenantSettings, Window]], source_name: str,
                        options: Options, resume: bool = True) -> list[RunReport]:
    limits = RateLimits()
    reports = []
    async with database(settings) as engine, new_http_client() as http:
        for tenant, window in plans:
            source = history_source(source_name, AlohubClient(http, tenant, limits=limits))
            with ProgressDisplay(tenant.tenant_id) as display:
                reports.append(await backfill(engine, tenant, source, window, options=options,
                                              progress=display.update, resume=resume))
    return reports


class ProgressDisplay:
    """Progress per page fetched: a tqdm bar on a terminal (records, rate, ETA); otherwise a
    log sentence every few seconds. The total is Alohub's totalRecord of each window, summed;
    until every window has announced its own, the silent ones count as the average of the others."""

    LOG_EVERY_S = 5.0

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.bar = None
        self.last_log = 0.0
        self.started = time.monotonic()
        self._above = contextlib.ExitStack()

    def __enter__(self) -> ProgressDisplay:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=None, unit=" records", desc=f"backfill {self.tenant_id}", dynamic_ncols=True,
                            file=sys.stderr)
            # Log lines (a retried request, say) are printed above the bar, not through it.
            self._above.enter_context(lines_above(lambda line: tqdm.write(line, file=sys.stderr)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._above.close()
        if self.bar is not None:
            self.bar.close()

    def update(self, r: RunReport) -> None:
        if self.bar is not None:
            total = r.expected_records
            if self.bar.total != total:
                self.bar.total = total
            # update() rather than setting n: tqdm's rate and ETA are smoothed over its updates.
            if r.fetched_records > self.bar.n:
                self.bar.update(r.fetched_records - self.bar.n)
            self.bar.set_postfix_str(
                f"stored {r.records:,}, new {r.tally.first_seen:,}, changed {r.tally.changed:,}, "
                f"windows {r.windows_done}/{r.windows}", refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self.last_log >= self.LOG_EVERY_S or r.status != "running":
            self.last_log = now
            log.info("%s", progress_sentence(r, now - self.started))


def progress_sentence(r: RunReport, elapsed_s: float) -> str:
    """One log line: fetched of the total (percent, one decimal), stored, pages, rate and time left."""
    total = r.expected_records
    exact = r.announced_windows >= r.windows
    rate = r.fetched_records / elapsed_s if elapsed_s > 0 else 0.0
    line = f"Backfill of tenant {r.tenant_id}: {r.fetched_records:,} records fetched"
    if total:
        line += f" of {'' if exact else 'about '}{total:,} ({100 * r.fetched_records / total:.1f} %)"
    line += (f", {r.records:,} stored; {r.fetched_pages:,} pages, windows {r.windows_done} of {r.windows},"
             f" {rate:,.0f} records/s")
    if total and rate > 0 and r.status == "running":
        line += f", about {_duration((total - r.fetched_records) / rate)} left"
    return line + "."


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
