"""The recording archive's downloader: which recordings to fetch, and fetching them.

Each run (the scheduled job or `callstore recordings fetch`):

1. makes failed recordings due again when their tenant's media settings
   changed since they failed (a fingerprint of the settings is kept on the
   row), and enqueues ended calls with a `recording_url` that have no
   `callstore.recordings` row yet, reading only calls changed since the last
   scan (a watermark on `calls.updated_at`): the webhook path pays nothing;
2. claims due `pending` rows, oldest call first, with `FOR UPDATE SKIP
   LOCKED` and a short lease (at most 2 minutes) that the run renews while it
   works and releases when it ends abnormally; a killed run's rows come back
   when the lease lapses;
3. downloads with bounded concurrency and rate (sync/media.py), moves each
   verified file into the store, and records the outcome: stored; pending
   again after a backoff; failed after `max_attempts` or when refused by the
   safety policy; expired on 404.

Every item is isolated: whatever one recording raises becomes that
recording's outcome (logged once, with its call id and the reason), and the
run goes on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.engine import is_unavailable
from store.recording_store import LocalRecordingStore, RecordingStore, storage_key
from store.settings import Settings, TenantSettings
from store.tenant_runs import TenantRuns, TenantsFailed, run_per_tenant
from sync.media import Downloaded, DownloadError, Expired, Refused, download, resolve_url

log = logging.getLogger("callstore.recordings")

#: Seconds to wait after the n-th failed attempt (the last value repeats):
#: 1 min, 5 min, 30 min, 2 h, 6 h, then every 12 h until max_attempts.
DEFAULT_BACKOFF = (60, 300, 1800, 7200, 21600, 43200)
#: Overlap of successive scans of calls.updated_at: a transaction that
#: committed late (its updated_at is its start time) is still seen.
SCAN_OVERLAP = "10 minutes"


@dataclass(frozen=True)
class FetchOptions:
    concurrency: int = 4
    #: Downloads started per second; 0 = unlimited.
    rate: float = 10.0
    max_attempts: int = 8
    backoff: Sequence[int] = DEFAULT_BACKOFF
    #: How long a claimed row belongs to this run before another may take it;
    #: renewed every third of it while the run works.
    lease_s: int = 120
    max_redirects: int = 5
    max_bytes: int = 2 * 1024**3
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(30.0, connect=10.0, pool=None))

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchOptions:
        return cls(
            concurrency=settings.recordings_concurrency,
            rate=settings.recordings_rate,
            max_attempts=settings.recordings_max_attempts,
            lease_s=settings.recordings_lease_s,
        )


@dataclass(frozen=True)
class Outcome:
    tenant_id: str
    call_id: str
    #: stored | retry | failed | expired
    status: str
    attempts: int
    error: str | None = None
    size: int = 0


@dataclass
class FetchReport:
    enqueued: int = 0
    #: Failed recordings made due again (`recordings fetch --retry-failed`).
    retried: int = 0
    #: Failed recordings made due again because their tenant's media settings changed.
    requeued: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.bytes += outcome.size

    @property
    def attempted(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class _Claim:
    tenant_id: str
    call_id: str
    attempts: int
    recording_url: str | None
    started_at: datetime | None


# --- SQL -------------------------------------------------------------------------

_ENQUEUE_CHANGED = text(
    f"""
    WITH mark AS (
        SELECT coalesce((SELECT scanned_until FROM callstore.recording_scan WHERE name = 'calls'),
                        '-infinity'::timestamptz) AS since
    ), ins AS (
        INSERT INTO callstore.recordings (tenant_id, call_id, call_started_at)
        SELECT c.tenant_id, c.call_id, c.started_at
        FROM callstore.calls c, mark
        WHERE c.updated_at >= mark.since - interval '{SCAN_OVERLAP}'
          AND c.ended_at IS NOT NULL AND coalesce(c.recording_url, '') <> ''
        ON CONFLICT (tenant_id, call_id) DO NOTHING
        RETURNING 1
    ), moved AS (
        INSERT INTO callstore.recording_scan (name, scanned_until) VALUES ('calls', now())
        ON CONFLICT (name) DO UPDATE SET scanned_until = excluded.scanned_until, updated_at = now()
    )
    SELECT count(*) FROM ins
    """
)

_ENQUEUE_IDS = text(
    """
    WITH ins AS (
        INSERT INTO callstore.recordings (tenant_id, call_id, call_started_at)
        SELECT c.tenant_id, c.call_id, c.started_at FROM callstore.calls c
        WHERE c.call_id = ANY(CAST(:ids AS text[]))
          AND (CAST(:tenant AS text) IS NULL OR c.tenant_id = CAST(:tenant AS text))
          AND c.ended_at IS NOT NULL AND coalesce(c.recording_url, '') <> ''
        ON CONFLICT (tenant_id, call_id) DO NOTHING
        RETURNING 1
    ), again AS (
        -- Asked for by name: a failed recording gets one more attempt, now.
        UPDATE callstore.recordings SET status = 'pending', next_attempt_at = now(), updated_at = now()
        WHERE call_id = ANY(CAST(:ids AS text[]))
          AND (CAST(:tenant AS text) IS NULL OR tenant_id = CAST(:tenant AS text))
          AND status IN ('pending', 'failed')
    )
    SELECT count(*) FROM ins
    """
)

_CLAIM = text(
    """
    WITH due AS (
        SELECT r.tenant_id, r.call_id FROM callstore.recordings r
        WHERE r.status = 'pending' AND r.next_attempt_at <= now()
          AND (CAST(:tenant AS text) IS NULL OR r.tenant_id = CAST(:tenant AS text))
          AND (CAST(:ids AS text[]) IS NULL OR r.call_id = ANY(CAST(:ids AS text[])))
        ORDER BY r.call_started_at NULLS LAST, r.tenant_id, r.call_id
        LIMIT :n
        FOR UPDATE OF r SKIP LOCKED
    )
    UPDATE callstore.recordings r
    SET next_attempt_at = now() + make_interval(secs => :lease), claimed_by = :token, updated_at = now()
    FROM due LEFT JOIN callstore.calls c ON c.tenant_id = due.tenant_id AND c.call_id = due.call_id
    WHERE r.tenant_id = due.tenant_id AND r.call_id = due.call_id
    RETURNING r.tenant_id, r.call_id, r.attempts, c.recording_url, c.started_at
    """
)

# An outcome is written only by the run that holds the claim: a run whose
# lease lapsed (it was stalled, or cut from the database) and whose row was
# taken by another run does not overwrite that run's outcome. Each written
# outcome counts in recording_downloads, in the same transaction.
_COUNT = """
    INSERT INTO callstore.recording_downloads (tenant_id, outcome, count)
    SELECT :tenant, :outcome, count(*) FROM done HAVING count(*) > 0
    ON CONFLICT (tenant_id, outcome) DO UPDATE
        SET count = callstore.recording_downloads.count + excluded.count, updated_at = now()
"""

_STORED = text(
    """
    WITH done AS (
        UPDATE callstore.recordings
        SET status = 'stored', sha256 = :sha256, size = :size, content_type = :ctype, url = :url,
            storage_key = :key, stored_at = now(), attempts = attempts + 1, last_error = NULL,
            last_attempt_at = now(), call_started_at = :started_at, claimed_by = NULL,
            settings_fingerprint = NULL, updated_at = now()
        WHERE tenant_id = :tenant AND call_id = :call_id AND status = 'pending' AND claimed_by = :token
        RETURNING 1
    )
    """ + _COUNT
)

_FAILED = text(
    """
    WITH done AS (
        UPDATE callstore.recordings
        SET status = :status, attempts = attempts + 1, last_error = :error, url = coalesce(:url, url),
            last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => :delay),
            claimed_by = NULL, settings_fingerprint = :fingerprint, updated_at = now()
        WHERE tenant_id = :tenant AND call_id = :call_id AND status = 'pending' AND claimed_by = :token
        RETURNING 1
    )
    """ + _COUNT
)

_RENEW = text(
    """
    UPDATE callstore.recordings SET next_attempt_at = now() + make_interval(secs => :lease)
    WHERE claimed_by = :token AND status = 'pending'
    """
)

_RELEASE = text(
    """
    UPDATE callstore.recordings SET next_attempt_at = now(), claimed_by = NULL, updated_at = now()
    WHERE claimed_by = :token AND status = 'pending'
    """
)

_REQUEUE_CHANGED = text(
    """
    UPDATE callstore.recordings r
    SET status = 'pending', next_attempt_at = now(), settings_fingerprint = NULL, updated_at = now()
    FROM unnest(CAST(:tenants AS text[]), CAST(:fingerprints AS text[])) AS t(tenant_id, fingerprint)
    WHERE r.tenant_id = t.tenant_id AND r.status = 'failed'
      AND r.settings_fingerprint IS NOT NULL AND r.settings_fingerprint <> t.fingerprint
    """
)

#: The fingerprint kept on a row refused because its tenant is not configured:
#: any configured tenant's differs, so configuring it makes the row due again.
UNCONFIGURED = "unconfigured"


def media_fingerprint(tenant: TenantSettings) -> str:
    """A digest of what decides whether a tenant's recordings can be fetched:
    its media origins, media URL and API key (hashed: the key never reaches
    the database). A failed recording whose fingerprint differs from its
    tenant's current one is tried again."""
    digest = hashlib.sha256()
    for part in (tenant.media_url or "", *sorted(str(o) for o in tenant.media_origins),
                 hashlib.sha256((tenant.api_key or "").encode()).hexdigest()):
        digest.update(part.encode() + b"\x00")
    return digest.hexdigest()[:32]


async def enqueue(conn: AsyncConnection, *, call_ids: Sequence[str] | None = None, tenant: str | None = None) -> int:
    """Create pending rows for eligible calls; returns how many were new."""
    if call_ids:
        return int(await conn.scalar(_ENQUEUE_IDS, {"ids": list(call_ids), "tenant": tenant}) or 0)
    return int(await conn.scalar(_ENQUEUE_CHANGED) or 0)


async def retry_failed(conn: AsyncConnection, *, tenant: str | None = None) -> int:
    """Every failed recording gets one more attempt, now (after fixing a setting
    such as ALOHUB_MEDIA_HOSTS, or an outage of Alohub's media server).
    Expired (404) and purged ones stay as they are. Returns how many."""
    result = await conn.execute(text(
        """
        UPDATE callstore.recordings SET status = 'pending', next_attempt_at = now(), updated_at = now()
        WHERE status = 'failed' AND (CAST(:tenant AS text) IS NULL OR tenant_id = CAST(:tenant AS text))
        """), {"tenant": tenant})
    return int(result.rowcount)


async def requeue_changed(conn: AsyncConnection, tenants: Sequence[TenantSettings]) -> int:
    """Failed recordings of tenants whose media settings changed since they
    failed become due now (one more attempt). Returns how many."""
    result = await conn.execute(_REQUEUE_CHANGED, {
        "tenants": [t.tenant_id for t in tenants], "fingerprints": [media_fingerprint(t) for t in tenants]})
    return int(result.rowcount)


async def count_due(conn: AsyncConnection, *, tenant: str | None = None,
                    call_ids: Sequence[str] | None = None) -> int:
    """How many pending recordings are due now (for a progress bar)."""
    return int(await conn.scalar(text(
        """
        SELECT count(*) FROM callstore.recordings r
        WHERE r.status = 'pending' AND r.next_attempt_at <= now()
          AND (CAST(:tenant AS text) IS NULL OR r.tenant_id = CAST(:tenant AS text))
          AND (CAST(:ids AS text[]) IS NULL OR r.call_id = ANY(CAST(:ids AS text[])))
        """), {"tenant": tenant, "ids": list(call_ids) if call_ids else None}) or 0)


async def claim(conn: AsyncConnection, n: int, lease_s: int, token: str, *, tenant: str | None = None,
                call_ids: Sequence[str] | None = None) -> list[_Claim]:
    """Up to `n` due rows, leased to the run `token` for `lease_s` seconds."""
    rows = await conn.execute(
        _CLAIM, {"n": n, "lease": lease_s, "token": token, "tenant": tenant,
                 "ids": list(call_ids) if call_ids else None}
    )
    return [_Claim(*r) for r in rows]


async def renew(conn: AsyncConnection, token: str, lease_s: int) -> int:
    """Extend the lease of every row the run `token` still holds."""
    return int((await conn.execute(_RENEW, {"token": token, "lease": lease_s})).rowcount)


async def release(conn: AsyncConnection, token: str) -> int:
    """Rows the run `token` holds without an outcome become due now."""
    return int((await conn.execute(_RELEASE, {"token": token})).rowcount)


def _local_reason(exc: BaseException) -> str:
    """The reason of an error raised where no database is involved (the
    download, the staging directory, the store): an OSError is the disk's."""
    if isinstance(exc, OSError):
        return f"storage error: {exc.strerror or type(exc).__name__}"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """An unexpected exception in words, safe to store and show (no secrets:
    type and message, never a request's headers)."""
    if is_unavailable(exc):
        return f"the database could not be reached ({type(exc).__name__})"
    if isinstance(exc, sa_exc.DBAPIError):
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None and str(exc.orig).strip() else ""
        return f"database error: {detail[:200] or type(exc.orig).__name__}"
    message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}" + (f": {message}" if message else "")


# --- running ---------------------------------------------------------------------


class _Pace:
    """At most `rate` starts per second across all workers (0 = unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next - now
            self.next = max(now, self.next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class Fetcher:
    """Downloads due recordings into `store` and records every outcome."""

    def __init__(self, engine: AsyncEngine, settings: Settings, store: RecordingStore,
                 options: FetchOptions | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.tenants = {t.tenant_id: t for t in settings.tenants}
        self.fingerprints = {t.tenant_id: media_fingerprint(t) for t in settings.tenants}
        self.store = store
        self.options = options or FetchOptions.from_settings(settings)
        self.on_outcome = on_outcome
        self.on_start = on_start
        #: The lease of this run's claims (a new one for each run).
        self.token = ""

    async def run(self, *, tenant: str | None = None, call_ids: Sequence[str] | None = None,
                  retry: bool = False, prepare: bool = True) -> FetchReport:
        """Fetch what is due; with `retry`, every failed recording first becomes due again.

        Without `prepare`, nothing is enqueued or requeued first (the
        scheduled job does that once for every tenant, then runs one
        fetcher per tenant)."""
        report = FetchReport()
        started = time.monotonic()
        self.token = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            if retry:
                report.retried = await retry_failed(conn, tenant=tenant)
            if prepare:
                report.requeued = await requeue_changed(conn, list(self.tenants.values()))
                report.enqueued = await enqueue(conn, call_ids=call_ids, tenant=tenant)
            if self.on_start is not None:
                self.on_start(await count_due(conn, tenant=tenant, call_ids=call_ids))
        if report.requeued:
            log.info("recordings: %d failed ones due again: their tenant's media settings changed", report.requeued)
        await asyncio.to_thread(self.store.ensure_staging)
        opts = self.options
        queue: asyncio.Queue[_Claim | None] = asyncio.Queue()
        progress = asyncio.Event()
        in_flight = 0
        pace = _Pace(opts.rate)
        limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
        async with httpx.AsyncClient(timeout=opts.timeout, limits=limits, follow_redirects=False) as client, \
                self._renewing():

            # Downloads hold the `concurrency` connections to Alohub; storing a
            # downloaded file (fsync, rename, directory fsync, commit) is disk
            # latency, done by up to 2 x concurrency tasks beside them.
            storing = asyncio.Semaphore(opts.concurrency * 2)
            store_tasks: set[asyncio.Task[None]] = set()

            def done(outcome: Outcome) -> None:
                nonlocal in_flight
                in_flight -= 1
                progress.set()
                report.add(outcome)
                if self.on_outcome is not None:
                    try:
                        self.on_outcome(outcome)
                    except Exception:  # noqa: BLE001 - a progress bar must not stop the archive
                        log.exception("recordings: reporting the outcome of call %r failed", outcome.call_id)

            async def store_one(item: _Claim, got: Downloaded) -> None:
                try:
                    done(await self._store_one(item, got))
                finally:
                    storing.release()

            async def worker() -> None:
                while (item := await queue.get()) is not None:
                    await pace.wait()
                    result = await self._download_one(client, item)
                    if isinstance(result, Outcome):
                        done(result)
                        continue
                    await storing.acquire()
                    task = asyncio.create_task(store_one(item, result))
                    store_tasks.add(task)
                    task.add_done_callback(store_tasks.discard)

            workers = [asyncio.create_task(worker()) for _ in range(opts.concurrency)]
            for w in workers:
                w.add_done_callback(lambda _: progress.set())
            normal = False
            try:
                while True:
                    if any(w.done() for w in workers):
                        # Items never raise, so this is a bug of the loop
                        # itself: end the run with it rather than wait forever.
                        dead = next(w for w in workers if w.done())
                        raise (None if dead.cancelled() else dead.exception()) or RuntimeError("a worker stopped")
                    if queue.qsize() < opts.concurrency:
                        # An outcome recorded while the claim runs may make a
                        # row due that the claim's snapshot did not see: only
                        # end when nothing happened meanwhile.
                        progress.clear()
                        async with self.engine.begin() as conn:
                            batch = await claim(conn, opts.concurrency * 4, opts.lease_s, self.token,
                                                tenant=tenant, call_ids=call_ids)
                        for item in batch:
                            queue.put_nowait(item)
                        in_flight += len(batch)
                        if batch:
                            continue
                        if in_flight == 0 and not progress.is_set():
                            break
                    # Nothing to claim now: what is in flight may come due
                    # again (a retry without backoff), so wait for it.
                    await progress.wait()
                    progress.clear()
                normal = True
            finally:
                if normal:
                    for _ in workers:
                        queue.put_nowait(None)
                else:
                    # The database went away, or the run was cancelled: stop
                    # now, and hand back what this run still holds.
                    for task in [*workers, *store_tasks]:
                        task.cancel()
                results = await asyncio.gather(*workers, *store_tasks, return_exceptions=True)
                # Rows still held have no recorded outcome (the run was cut
                # short, or the database refused the outcome): due again now.
                await asyncio.shield(self._release())
            for r in results:
                # Items are isolated (never raise); a failure here is a bug of the loop itself.
                if isinstance(r, Exception):
                    raise r
        report.seconds = time.monotonic() - started
        return report

    @contextlib.asynccontextmanager
    async def _renewing(self) -> AsyncIterator[None]:
        """Renew this run's leases every third of a lease while it works, so
        that a short lease never lapses under a long download."""

        async def loop() -> None:
            every = max(1.0, self.options.lease_s / 3)
            warned = False
            while True:
                await asyncio.sleep(every)
                try:
                    async with self.engine.begin() as conn:
                        await renew(conn, self.token, self.options.lease_s)
                    warned = False
                except Exception as exc:  # noqa: BLE001 - the leases lapse; the rows come back by themselves
                    if not warned:
                        log.warning("recordings: could not renew the leases (%s); they lapse and the recordings "
                                    "are retried", _reason(exc))
                        warned = True

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _release(self) -> None:
        try:
            async with self.engine.begin() as conn:
                n = await release(conn, self.token)
            if n:
                log.info("recordings: released %d claimed recordings for the next run", n)
        except Exception as exc:  # noqa: BLE001 - then the leases lapse by themselves, within lease_s
            log.warning("recordings: could not release the claimed recordings (%s); they are retried "
                        "when their lease lapses, within %d s", _reason(exc), self.options.lease_s)

    async def _download_one(self, client: httpx.AsyncClient, item: _Claim) -> Downloaded | Outcome:
        """The downloaded file, or the outcome of a failed attempt (already recorded)."""
        tenant = self.tenants.get(item.tenant_id)
        url: str | None = None
        try:
            if tenant is None:
                raise Refused(f"refused: tenant {item.tenant_id!r} is not configured")
            if not item.recording_url:
                raise Refused("refused: the call has no recording_url")
            url = resolve_url(tenant, item.recording_url)
            return await download(client, tenant, url, self.store.staging_dir,
                                  max_redirects=self.options.max_redirects, max_bytes=self.options.max_bytes)
        except Expired as exc:
            return await self._failed(item, "expired", str(exc), url, final=True)
        except Refused as exc:
            return await self._failed(item, "failed", str(exc), url, final=True)
        except DownloadError as exc:
            return await self._failed(item, "failed", str(exc), url, final=False)
        except Exception as exc:  # noqa: BLE001 - one recording's surprise is its own error, not the run's
            return await self._failed(item, "failed", _local_reason(exc), url, final=False, unexpected=exc)

    async def _store_one(self, item: _Claim, got: Downloaded) -> Outcome:
        """Move the verified file into the store, then record it (file first:
        a crash in between only costs a download, never a row without a file)."""
        try:
            tenant = self.tenants[item.tenant_id]
            key = storage_key(item.tenant_id, item.call_id, item.started_at, tenant.zone)
            await self.store.put_from_file(key, got.path)
        except Exception as exc:  # noqa: BLE001 - a full disk is this recording's error, not the run's
            got.path.unlink(missing_ok=True)
            return await self._failed(item, "failed", _local_reason(exc), got.url, final=False, unexpected=exc)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_STORED, {
                    "sha256": got.sha256, "size": got.size, "ctype": got.content_type, "url": got.url,
                    "key": key, "started_at": item.started_at, "tenant": item.tenant_id,
                    "call_id": item.call_id, "token": self.token, "outcome": "stored",
                })
        except Exception as exc:  # noqa: BLE001 - the file stays: the commit may have happened unseen
            return await self._failed(item, "failed", _reason(exc), got.url, final=False, unexpected=exc)
        log.debug("stored recording of call %r (%d bytes)", item.call_id, got.size)
        return Outcome(item.tenant_id, item.call_id, "stored", item.attempts + 1, size=got.size)

    async def _failed(self, item: _Claim, status: str, error: str, url: str | None, *, final: bool,
                      unexpected: BaseException | None = None) -> Outcome:
        """Record a failed attempt (retried or final by the usual rules) and log
        it once. Never raises: if the database cannot take the outcome either,
        the row keeps its claim, which lapses within a lease."""
        attempts = item.attempts + 1
        if status == "failed" and not final and attempts < self.options.max_attempts:
            status = "retry"
        backoff = self.options.backoff
        delay = backoff[min(attempts - 1, len(backoff) - 1)] * random.uniform(0.9, 1.1) if backoff else 0.0
        stored_status = "pending" if status == "retry" else status
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_FAILED, {
                    "status": stored_status, "error": error[:500], "url": url, "delay": delay,
                    "tenant": item.tenant_id, "call_id": item.call_id, "token": self.token,
                    "fingerprint": self.fingerprints.get(item.tenant_id, UNCONFIGURED) if status == "failed" else None,
                    "outcome": status,
                })
        except Exception as exc:  # noqa: BLE001 - logged below, with the attempt's own reason
            log.error("recording of call %r: %s (attempt %d); the outcome could not be recorded (%s), so it is "
                      "retried when its lease lapses", item.call_id, error, attempts, _reason(exc))
            return Outcome(item.tenant_id, item.call_id, "retry", attempts, error=error)
        if unexpected is not None:
            # A traceback only for what is neither a database nor a storage
            # error: that is a bug worth one.
            trace = not isinstance(unexpected, OSError | sa_exc.DBAPIError) and not is_unavailable(unexpected)
            log.error("recording of call %r: %s: %s (attempt %d)", item.call_id, status, error, attempts,
                      exc_info=unexpected if trace else None)
        else:
            log.info("Recording of call %r not stored (attempt %d): %s; %s.", item.call_id, attempts, error,
                     _OUTCOME_WORDS.get(status, status))
        return Outcome(item.tenant_id, item.call_id, status, attempts, error=error)


_OUTCOME_WORDS = {"retry": "it will be tried again later", "failed": "no more attempts",
                  "expired": "Alohub no longer has it"}
_COUNT_WORDS = {"retry": "to be retried"}


def media_disabled_reason(settings: Settings) -> str | None:
    if not any(t.media_origins for t in settings.tenants):
        return "no tenant has a media origin (set ALOHUB_MEDIA_URL, ALOHUB_API_URL or ALOHUB_MEDIA_HOSTS)"
    return None


async def run_job(engine: AsyncEngine, settings: Settings, *, runs: TenantRuns | None = None,
                  store: RecordingStore | None = None) -> FetchReport:
    """The scheduled job: enqueue what is new for every tenant, then fetch what is
    due tenant by tenant, each tenant its own task (store/tenant_runs.py): at
    most CALLSTORE_TENANT_CONCURRENCY tenants at once, each with its own
    CALLSTORE_RECORDINGS_CONCURRENCY downloads and CALLSTORE_TENANT_RUN_BUDGET;
    a tenant whose media server is slow holds only its own downloads. Recordings
    of a tenant no longer configured are not fetched by the job."""
    store = store or LocalRecordingStore(settings.recordings_dir)
    report = FetchReport()
    started = time.monotonic()
    async with engine.begin() as conn:
        report.requeued = await requeue_changed(conn, list(settings.tenants))
        report.enqueued = await enqueue(conn)
    if report.requeued:
        log.info("recordings: %d failed ones due again: their tenant's media settings changed", report.requeued)

    async def one(tenant_id: str) -> FetchReport:
        return await Fetcher(engine, settings, store).run(tenant=tenant_id, prepare=False)

    def said(_: str, r: FetchReport) -> str:
        counts = ", ".join(f"{n:,} {_COUNT_WORDS.get(k, k)}" for k, n in sorted(r.counts.items()))
        return f"recordings: {counts or 'nothing due'}"

    results = await run_per_tenant("recordings", [t.tenant_id for t in settings.tenants], one,
                                   concurrency=settings.tenant_concurrency, budget_s=settings.tenant_run_budget_s,
                                   runs=runs, describe=said)
    for r in results:
        if r.result is not None:
            for k, n in r.result.counts.items():
                report.counts[k] = report.counts.get(k, 0) + n
            report.bytes += r.result.bytes
    report.seconds = time.monotonic() - started
    if report.attempted or report.enqueued:
        counts = ", ".join(f"{n:,} {_COUNT_WORDS.get(k, k)}" for k, n in sorted(report.counts.items()))
        log.info("Recordings pass: %s newly due; %s.", f"{report.enqueued:,}", counts or "nothing fetched")
    failed = [(r.tenant_id, r.error or r.outcome) for r in results if r.outcome != "ok"]
    if failed:
        raise TenantsFailed("recordings", failed)
    return report
