"""Backfill: page the call history over a time range and merge it into the store.

A run is a bounded pipeline: `fetch_pages` (sync/pagination.py) keeps up to
`concurrency` requests in flight, paced by the client's rate limiter, while
this module's writer turns records into history deliveries and hands them to
`store.ingest.ingest` in batches of `batch_size` (two statements per batch, one
transaction). The same transaction adds to the run's ledger rows and, for the
scheduled job, moves the cursor to the end of the windows fully written so
far: the cursor is always committed with the data it covers.

Re-running any range is safe: a record already stored is a duplicate raw
event and is not merged again, so it changes nothing and counts nothing.

A run that stops early (interrupted, or Alohub failing) first writes the
pages it has already fetched, so its row says how many pages and records it
stored. A manual run of the same tenant, source and range as a run that
stopped early resumes after the windows that run wrote completely.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from store.ingest import Delivery, ingest
from store.merge import call_id_of, parse_time
from store.settings import Settings, TenantSettings
from store.tenant_runs import TenantRuns, TenantsFailed, run_per_tenant
from sync import ledger
from sync.client import AlohubClient, RetryPolicy, new_http_client
from sync.pagination import PageResult, StreamEnd, WindowDone, fetch_pages
from sync.ratelimit import RateLimits
from sync.sources import HistorySource, Window, history_payload, history_source, missing_settings

log = logging.getLogger("callstore.sync.backfill")

CURSOR = "backfill"


@dataclass(frozen=True)
class Options:
    #: Records asked per page (the server may cap it; docs advise at most 100 on call-logs).
    limit: int = 100
    #: Requests in flight at once (the rate limiter decides how many go out per window).
    concurrency: int = 8
    #: Records per ingest transaction.
    batch_size: int = 5000
    #: Ingest transactions in flight at once: one normalises in Python while
    #: the other waits on Postgres (batches are sorted by key, so they never deadlock).
    writers: int = 2
    #: Long ranges are paged window by window (and the cursor advances window by window).
    chunk: timedelta = timedelta(days=1)


@dataclass
class RunReport:
    run_id: int
    tenant_id: str
    source: str
    window: Window
    status: str = "running"
    pages: int = 0
    records: int = 0
    #: Sum of the totals announced so far (grows as windows answer page 1),
    #: and how many windows announced one.
    announced: int = 0
    announced_windows: int = 0
    #: Pages and records received from Alohub (stored or about to be).
    fetched_pages: int = 0
    fetched_records: int = 0
    #: Where this run started when it resumed an earlier one that stopped early.
    resumed_from: datetime | None = None
    windows_done: int = 0
    windows: int = 0
    skipped_records: int = 0
    tally: ledger.Tally = field(default_factory=ledger.Tally)
    covered_until: datetime | None = None
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def expected_records(self) -> int | None:
        """The run's total: exact once every window announced its totalRecord; until then the
        announced totals plus, for each silent window, their average. None before any."""
        if self.announced_windows == 0:
            return None
        silent = max(0, self.windows - self.announced_windows)
        estimate = self.announced + round(silent * self.announced / self.announced_windows)
        return max(estimate, self.fetched_records)

    def summary(self) -> str:
        fields = ", ".join(f"{k} {v:,}" for k, v in self.tally.fields.most_common())
        rate = self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0
        zone = self.window.start.tzinfo
        resumed = (f", resuming from {self.resumed_from.astimezone(zone).isoformat()}"
                   if self.resumed_from is not None else "")
        return (
            f"Backfill of tenant {self.tenant_id} from {self.window.start.isoformat()} to {self.window.end.isoformat()}"
            f" ({self.source}, run {self.run_id}{resumed}): {self.status}. Stored {self.records:,} records"
            f" ({self.pages:,} pages) in {self.elapsed_s:.1f} s ({rate:,.0f} records/s);"
            f" {self.tally.first_seen:,} calls first seen by the backfill, {self.tally.changed:,} changed"
            + (f" ({fields})" if fields else "")
            + f", {self.tally.webhook_only:,} seen only by the webhook."
            + (f" {self.skipped_records:,} records without a call_id were skipped." if self.skipped_records else "")
            + (f" Error: {self.error}" if self.error else "")
        )


Progress = Callable[[RunReport], None]

#: The cyclic garbage collector's first threshold while a backfill runs.
GC_THRESHOLD = 100_000
_gc_runs = 0
_gc_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often while backfills run.

    A run allocates millions of short-lived objects (records, payloads,
    events, rows), almost none in reference cycles. With the default first
    threshold (700 allocations) the collector ran thousands of times per
    run, each time over the objects of the batch being built: about a
    quarter of the writer's CPU. Reference counting still frees everything
    at once; only cycles wait longer. The previous thresholds come back when
    the last concurrent run ends.
    """
    global _gc_runs, _gc_saved
    if _gc_runs == 0:
        _gc_saved = gc.get_threshold()
        if _gc_saved[0] and _gc_saved[0] < GC_THRESHOLD:
            gc.set_threshold(GC_THRESHOLD, *_gc_saved[1:])
    _gc_runs += 1
    try:
        yield
    finally:
        _gc_runs -= 1
        if _gc_runs == 0:
            gc.set_threshold(*_gc_saved)


async def backfill(engine: AsyncEngine, tenant: TenantSettings, source: HistorySource, window: Window, *,
                   kind: str = "manual", cursor: str | None = None, options: Options = Options(),
                   progress: Progress | None = None, resume: bool = True) -> RunReport:
    """Page `window` from `source` into the store; return what was reconciled.

    With `resume` (manual runs), a range that an earlier run of the same
    tenant and source stopped in early starts after what that run covered.
    Raises the source's error (after recording the run as failed) if paging fails.
    """
    with _fewer_collections():
        return await _backfill(engine, tenant, source, window, kind=kind, cursor=cursor, options=options,
                               progress=progress, resume=resume and kind == "manual")


async def _backfill(engine: AsyncEngine, tenant: TenantSettings, source: HistorySource, window: Window, *,
                    kind: str, cursor: str | None, options: Options, progress: Progress | None,
                    resume: bool) -> RunReport:
    started = time.monotonic()
    async with engine.begin() as conn:
        start = await ledger.resume_point(conn, tenant.tenant_id, source.name, window.start, window.end) \
            if resume else None
        run_id = await ledger.start_run(conn, tenant.tenant_id, kind, source.name, window.start, window.end,
                                        covered_until=start)
    todo = Window(start, window.end) if start is not None else window
    windows = todo.split(options.chunk) if todo.start < todo.end else []
    report = RunReport(run_id, tenant.tenant_id, source.name, window, windows=len(windows), resumed_from=start,
                       covered_until=start)
    writer = _Writer(engine, tenant, report, windows, cursor, options.writers)
    queue: asyncio.Queue[PageResult | WindowDone | StreamEnd] = asyncio.Queue(maxsize=max(4, options.concurrency * 4))
    producer = asyncio.create_task(
        fetch_pages(source.page, windows, queue, limit=options.limit, concurrency=options.concurrency))
    try:
        while True:
            item = await queue.get()
            if isinstance(item, PageResult):
                writer.add_page(item)
                report.fetched_pages += 1
                report.fetched_records += len(item.records)
                if item.page == 1 and item.total is not None:
                    report.announced += item.total
                    report.announced_windows += 1
                if len(writer.buffer) >= options.batch_size:
                    await writer.flush()
            elif isinstance(item, WindowDone):
                writer.window_done(item.window)
                report.windows_done += 1
            else:
                await writer.flush()
                await writer.drain()
                if item.error is not None:
                    raise item.error
                break
            if progress is not None:
                progress(report)
        async with engine.begin() as conn:
            end = report.covered_until or window.start
            only = await ledger.webhook_only(conn, tenant.tenant_id, tenant.timezone, window.start, end)
            await ledger.add_to_ledger(conn, run_id, tenant.tenant_id, only)
            await ledger.finish_run(conn, run_id, tenant.tenant_id, "ok")
        report.tally.add(only)
        report.status = "ok"
    except BaseException as exc:
        report.status = "interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else "failed"
        report.error = str(exc) or type(exc).__name__
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer
        # Keep what was fetched: the pages in the buffer are written (with
        # their ledger rows and the run's counts), so the run's row says what
        # it stored and a resumed run need not fetch them again.
        with contextlib.suppress(BaseException):
            await writer.flush()
        with contextlib.suppress(BaseException):
            await writer.drain()
        with contextlib.suppress(Exception):
            async with engine.begin() as conn:
                await ledger.finish_run(conn, run_id, tenant.tenant_id, report.status, report.error[:1000])
        raise
    finally:
        report.elapsed_s = time.monotonic() - started
        if progress is not None:
            progress(report)
    return report


class _Writer:
    """Turns pages into deliveries and writes them in batches with their ledger rows and cursor.

    Up to `parallel` batches are written at once, each in its own transaction.
    A batch that moves the cursor first waits for every earlier batch to
    commit, so the cursor never covers data that is not committed.
    """

    def __init__(self, engine: AsyncEngine, tenant: TenantSettings, report: RunReport, windows: Sequence[Window],
                 cursor: str | None, parallel: int) -> None:
        self.engine = engine
        self.tenant = tenant
        self.tenants = {tenant.tenant_id: tenant}
        self.report = report
        self.windows = windows
        self.cursor = cursor
        self.parallel = max(1, parallel)
        self.buffer: list[Delivery] = []
        self.day_of: dict[str, date] = {}
        self.tally = ledger.Tally()
        self.pages = 0
        self.done: set[int] = set()
        self.prefix = 0  # windows[:prefix] are complete
        self.written_prefix = 0
        self.in_flight: set[asyncio.Task[None]] = set()

    def add_page(self, page: PageResult) -> None:
        zone = self.tenant.zone
        default_day = self.windows[page.window].start.astimezone(zone).date()
        now = datetime.now(timezone.utc)
        self.pages += 1
        for record in page.records:
            call_id = call_id_of(record)
            if call_id is None:
                self.report.skipped_records += 1
                continue
            started = parse_time(record.get("starttime"), zone)
            day = started.astimezone(zone).date() if started is not None else default_day
            self.day_of[call_id] = day
            self.tally.record(day)
            payload = history_payload(record, self.tenant.media_url)
            self.buffer.append(Delivery(self.tenant.tenant_id, call_id, "history", payload, now))

    def window_done(self, index: int) -> None:
        self.done.add(index)
        while self.prefix in self.done:
            self.prefix += 1

    async def flush(self) -> None:
        """Start writing the buffered records (and the cursor, if windows completed)."""
        covered = self.windows[self.prefix - 1].end if self.prefix > self.written_prefix else None
        if not self.buffer and covered is None and not self.pages:
            return
        batch, day_of, tally, pages = self.buffer, self.day_of, self.tally, self.pages
        self.buffer, self.day_of, self.tally, self.pages = [], {}, ledger.Tally(), 0
        if covered is not None:
            self.written_prefix = self.prefix
            await self.drain()
        while len(self.in_flight) >= self.parallel:
            done, _ = await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
            self.in_flight -= done
            for task in done:
                task.result()
        self.in_flight.add(asyncio.create_task(self._write(batch, day_of, tally, pages, covered)))

    async def drain(self) -> None:
        """Wait for every batch in flight; raise the first failure."""
        tasks, self.in_flight = self.in_flight, set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _write(self, batch: list[Delivery], day_of: dict[str, date], tally: ledger.Tally, pages: int,
                     covered: datetime | None) -> None:
        default = self.windows[0].start.astimezone(self.tenant.zone).date()
        async with self.engine.begin() as conn:
            result = await ingest(conn, batch, self.tenants, track_changes=True)
            tally.changes(result.changes, day_of, default)
            await ledger.add_to_ledger(conn, self.report.run_id, self.tenant.tenant_id, tally)
            await ledger.progress_run(conn, self.report.run_id, self.tenant.tenant_id, pages, len(batch), covered)
            if covered is not None and self.cursor is not None:
                await ledger.advance_cursor(conn, self.tenant.tenant_id, self.cursor, covered)
        self.report.pages += pages
        self.report.records += len(batch)
        self.report.tally.add(tally)
        if covered is not None:
            self.report.covered_until = covered


# -- the scheduled job ---------------------------------------------------------

def tenants_with_history(settings: Settings) -> tuple[list[TenantSettings], list[str]]:
    """Tenants the backfill can run for, and why the others cannot."""
    ready, reasons = [], []
    for t in settings.tenants:
        why = missing_settings(settings.history_source, bool(t.api_url), bool(t.api_key))
        if why is None:
            ready.append(t)
        else:
            reasons.append(f"tenant {t.tenant_id}: {why}")
    return ready, reasons


def scheduled_window(cursor: datetime | None, now: datetime, overlap: timedelta) -> Window:
    """From `overlap` before the cursor (or before now, the first time) to now, in whole seconds."""
    end = now.replace(microsecond=0)
    start = (cursor if cursor is not None else end) - overlap
    return Window(start.replace(microsecond=0), end)


async def run_scheduled(engine: AsyncEngine, settings: Settings, *, http: httpx.AsyncClient | None = None,
                        limits: RateLimits | None = None, options: Options = Options(),
                        retry: RetryPolicy = RetryPolicy(), now: datetime | None = None,
                        runs: TenantRuns | None = None) -> list[RunReport]:
    """One run of the scheduled backfill for every tenant with API settings (under the job lock).

    Each tenant runs as its own task (store/tenant_runs.py): at most
    `settings.tenant_concurrency` at once, each cut after
    `settings.tenant_run_budget_s` (its run is then recorded as interrupted and
    the next run goes on from its cursor). Raises `TenantsFailed` after every
    tenant had its turn if any failed or was cut; returns the others' reports.
    """
    tenants, _ = tenants_with_history(settings)
    by_id = {t.tenant_id: t for t in tenants}
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(new_http_client())
        shared = http

        async def one(tenant_id: str) -> RunReport:
            tenant = by_id[tenant_id]
            async with engine.begin() as conn:
                await ledger.abandon_stale_runs(conn, tenant.tenant_id)
                cursor = await ledger.read_cursor(conn, tenant.tenant_id, CURSOR)
            moment = now or datetime.now(timezone.utc)
            window = scheduled_window(cursor, moment, timedelta(seconds=settings.backfill_overlap_s))
            client = AlohubClient(shared, tenant, limits=limits, retry=retry)
            source = history_source(settings.history_source, client)
            return await backfill(engine, tenant, source, window, kind="scheduled", cursor=CURSOR, options=options)

        results = await run_per_tenant("backfill", list(by_id), one, concurrency=settings.tenant_concurrency,
                                       budget_s=settings.tenant_run_budget_s, runs=runs,
                                       describe=lambda _, report: report.summary())
    failed = [r for r in results if r.outcome != "ok"]
    if failed:
        raise TenantsFailed("backfill", [(r.tenant_id, r.error or r.outcome) for r in failed])
    return [r.result for r in results if r.result is not None]
