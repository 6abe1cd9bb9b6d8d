"""`callstore recordings fetch|verify|purge`: the compliance archive by hand."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from dataclasses import replace
from typing import Any

from callstore.runtime import UsageError, database, run_async
from store.logs import lines_above
from store.recording_store import LocalRecordingStore
from store.recordings import check_file, purge, purge_candidates, stored_recordings
from store.settings import Settings
from sync.recordings import FetchOptions, Fetcher, Outcome

log = logging.getLogger("callstore.recordings")


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _rate(value: str) -> float:
    try:
        r = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= r <= 10000:
        raise argparse.ArgumentTypeError("must be between 0 (unlimited) and 10000")
    return r


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recordings", help="the recording archive: fetch, verify, purge")
    rsub = p.add_subparsers(dest="recordings_command", required=True)
    f = rsub.add_parser("fetch", help="download due recordings now (or the given calls')")
    f.add_argument("--call-id", action="append", default=[], help="only this call (repeatable); retries a failed one")
    f.add_argument("--tenant", help="only this tenant")
    f.add_argument("--retry-failed", action="store_true",
                   help="give every failed recording one more attempt now (expired and purged ones stay)")
    f.add_argument("--concurrency", type=_positive, help="parallel downloads (default CALLSTORE_RECORDINGS_CONCURRENCY)")
    f.add_argument("--rate", type=_rate, help="downloads started per second, 0 = unlimited (default CALLSTORE_RECORDINGS_RATE)")
    f.set_defaults(func=_fetch)
    v = rsub.add_parser("verify", help="re-hash every stored file against the database; exit 1 on any problem")
    v.add_argument("--tenant", help="only this tenant")
    v.set_defaults(func=_verify)
    g = rsub.add_parser("purge", help="delete stored files of calls older than the retention period")
    g.add_argument("--older-than-days", type=_positive, required=True, help="retention period in days")
    g.add_argument("--tenant", help="only this tenant")
    g.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    g.set_defaults(func=_purge)


def _tenant(settings: Settings, tenant: str | None) -> str | None:
    if tenant is not None and tenant not in {t.tenant_id for t in settings.tenants}:
        raise UsageError(f"--tenant: unknown tenant {tenant!r}")
    return tenant


class _Progress:
    """A tqdm bar on a terminal; a log line every few seconds otherwise.

    Each recording that is not stored is logged once, by the fetcher; while
    the bar is drawn, log lines are printed above it (not through it)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar: Any = None
        self.done = 0
        self.total = 0
        self.last = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._above = contextlib.ExitStack()

    def start(self, total: int) -> None:
        self.total = total
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr)
            self._above.enter_context(lines_above(lambda line: tqdm.write(line, file=sys.stderr)))
        else:
            log.info("%s %s to go.", f"{total:,}", self.unit)

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        if time.monotonic() - self.last >= 5:
            self.last = time.monotonic()
            log.info("%s of %s %s done.", f"{self.done:,}", f"{self.total:,}", self.unit)

    def close(self) -> None:
        self._above.close()
        if self.bar is not None:
            self.bar.close()


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _tenant(settings, args.tenant)
    options = FetchOptions.from_settings(settings)
    if args.concurrency is not None:
        options = replace(options, concurrency=args.concurrency)
    if args.rate is not None:
        options = replace(options, rate=args.rate)
    progress = _Progress("recordings")

    def outcome(o: Outcome) -> None:
        progress.step()

    async def go() -> int:
        async with database(settings, pool_size=options.concurrency + 2) as engine:
            fetcher = Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), options,
                              on_outcome=outcome, on_start=progress.start)
            try:
                report = await fetcher.run(tenant=tenant, call_ids=args.call_id or None, retry=args.retry_failed)
            finally:
                progress.close()
        mb = report.bytes / 1e6
        rate = mb / report.seconds if report.seconds else 0.0
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts.items())) or "nothing due"
        if args.retry_failed:
            print(f"recordings: {report.retried} failed ones made due again")
        if report.requeued:
            print(f"recordings: {report.requeued} failed ones due again: the media settings changed")
        print(f"recordings: {counts}; {mb:.1f} MB in {report.seconds:.1f} s ({rate:.1f} MB/s)")
        if args.call_id and report.attempted == 0:
            print("no pending or failed recording for the given --call-id (an ended call with a recording_url)",
                  file=sys.stderr)
            return 1
        return 1 if report.counts.get("failed") or report.counts.get("retry") else 0

    return run_async(go())


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _tenant(settings, args.tenant)
    store = LocalRecordingStore(settings.recordings_dir)

    async def go() -> tuple[int, int]:
        checked = bad = 0
        async with database(settings) as engine, engine.connect() as conn:
            async for rec in stored_recordings(conn, tenant):
                checked += 1
                problem = await check_file(store, rec)
                if problem is not None:
                    bad += 1
                    print(f"{'MISSING' if problem == 'missing' else 'BAD'} {rec.tenant_id} {rec.call_id} "
                          f"{rec.storage_key}: {problem}")
        return checked, bad

    checked, bad = run_async(go())
    print(f"verified {checked} stored recordings: {checked - bad} intact, {bad} missing or altered")
    return 1 if bad else 0


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _tenant(settings, args.tenant)
    store = LocalRecordingStore(settings.recordings_dir)

    async def go() -> int:
        async with database(settings) as engine:
            if args.dry_run:
                async with engine.connect() as conn:
                    batch = await purge_candidates(conn, args.older_than_days, tenant, limit=10**9)
                for rec in batch:
                    print(f"would purge {rec.tenant_id} {rec.call_id} {rec.storage_key}")
                return len(batch)
            return (await purge(engine, store, args.older_than_days, tenant)).count

    n = run_async(go())
    print(f"{'would purge' if args.dry_run else 'purged'} {n} recordings older than {args.older_than_days} days")
    return 0
