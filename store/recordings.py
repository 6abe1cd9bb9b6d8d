"""The recording archive's rows, shared by playback (receiver/), the downloader
(sync/) and the maintenance commands: lookups, the access audit, integrity
checks, retention (the daily job and `recordings purge`) and the archive's
figures for /metrics.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.recording_store import LocalRecordingStore, RecordingStore, UnsafeKey
from store.settings import Settings
from store.tables import NO_TENANT

log = logging.getLogger("callstore.recordings")

STATUSES = ("pending", "stored", "failed", "expired", "purged")


@dataclass(frozen=True)
class Recording:
    tenant_id: str
    call_id: str
    status: str
    sha256: str | None
    size: int | None
    storage_key: str | None
    stored_at: datetime | None
    call_started_at: datetime | None
    attempts: int
    last_error: str | None


_COLUMNS = "tenant_id, call_id, status, sha256, size, storage_key, stored_at, call_started_at, attempts, last_error"


async def find_recordings(conn: AsyncConnection, call_id: str, tenant: str | None = None) -> list[Recording]:
    """The archive rows of `call_id` (one per tenant that has such a call)."""
    sql = f"SELECT {_COLUMNS} FROM callstore.recordings WHERE call_id = :call_id"
    params: dict[str, object] = {"call_id": call_id}
    if tenant is not None:
        sql += " AND tenant_id = :tenant"
        params["tenant"] = tenant
    rows = await conn.execute(text(sql + " ORDER BY tenant_id"), params)
    return [Recording(*r) for r in rows]


@dataclass(frozen=True)
class Access:
    """One access to a recording's bytes, or one refused request for them, as the audit keeps it."""

    token_id: int | None
    token_name: str | None
    #: None: a refused request that named no tenant callstore knows.
    tenant_id: str | None
    call_id: str
    client_addr: str | None
    method: str
    range_header: str | None
    status_code: int
    first_byte: int | None
    last_byte: int | None
    bytes_planned: int
    sha256: str | None
    #: The console's signed-in user (API requests have a token instead).
    user_name: str | None = None


async def open_access(conn: AsyncConnection, access: Access) -> int:
    """Write the audit row before any byte is sent (nothing sent yet); returns its id."""
    row_id = await conn.scalar(
        text(
            """
            INSERT INTO callstore.recording_access
                (token_id, token_name, tenant_id, call_id, client_addr, method, range_header, status_code,
                 first_byte, last_byte, bytes_planned, bytes_sent, complete, sha256, user_name)
            VALUES (:token_id, :token_name, :tenant_id, :call_id, :client_addr, :method, :range_header,
                    :status_code, :first_byte, :last_byte, :bytes_planned, 0, :complete, :sha256, :user_name)
            RETURNING id
            """
        ),
        {**access.__dict__, "tenant_id": NO_TENANT if access.tenant_id is None else access.tenant_id,
         "complete": access.bytes_planned == 0},
    )
    return int(row_id)


async def close_access(conn: AsyncConnection, tenant_id: str, access_id: int, bytes_sent: int,
                       complete: bool) -> None:
    """Record what was really sent once the response has ended (only served requests, so of a tenant)."""
    await conn.execute(
        text("UPDATE callstore.recording_access SET bytes_sent = :sent, complete = :complete "
             "WHERE tenant_id = :t AND id = :id"),
        {"t": tenant_id, "id": access_id, "sent": bytes_sent, "complete": complete},
    )


async def stored_recordings(conn: AsyncConnection, tenant: str | None = None) -> AsyncIterator[Recording]:
    """Every stored recording, streamed (the archive may be large)."""
    sql = f"SELECT {_COLUMNS} FROM callstore.recordings WHERE status = 'stored'"
    params: dict[str, object] = {}
    if tenant is not None:
        sql += " AND tenant_id = :tenant"
        params["tenant"] = tenant
    result = await conn.stream(text(sql + " ORDER BY tenant_id, call_id"), params)
    async for row in result:
        yield Recording(*row)


async def check_file(store: RecordingStore, rec: Recording) -> str | None:
    """None when the stored file has the recorded size and SHA-256; else what is wrong."""
    if rec.storage_key is None or rec.sha256 is None or rec.size is None:
        return "the database row has no storage key, hash or size"
    try:
        size = await store.size(rec.storage_key)
    except UnsafeKey:
        return "the storage key is unsafe"
    if size is None:
        return "missing"
    if size != rec.size:
        return f"altered: {size} bytes, expected {rec.size}"
    digest = hashlib.sha256()
    async for chunk in store.open_range(rec.storage_key, 0, size - 1):
        digest.update(chunk)
    if digest.hexdigest() != rec.sha256:
        return f"altered: sha256 {digest.hexdigest()}, expected {rec.sha256}"
    return None


async def purge_candidates(conn: AsyncConnection, older_than_days: int, tenant: str | None = None,
                           limit: int = 1000) -> list[Recording]:
    """Stored recordings of calls that started more than `older_than_days` ago
    (calls without a start time count from when the file was stored)."""
    sql = f"""
        SELECT {_COLUMNS} FROM callstore.recordings
        WHERE status = 'stored'
          AND coalesce(call_started_at, stored_at) < now() - make_interval(days => :days)
    """
    params: dict[str, object] = {"days": older_than_days, "limit": limit}
    if tenant is not None:
        sql += " AND tenant_id = :tenant"
        params["tenant"] = tenant
    rows = await conn.execute(text(sql + " ORDER BY call_started_at NULLS LAST LIMIT :limit"), params)
    return [Recording(*r) for r in rows]


_PURGE_BATCH = f"""
    WITH due AS (
        SELECT tenant_id, call_id FROM callstore.recordings
        WHERE status = 'stored'
          AND coalesce(call_started_at, stored_at) < now() - make_interval(days => :days)
          AND (CAST(:tenant AS text) IS NULL OR tenant_id = CAST(:tenant AS text))
        ORDER BY call_started_at NULLS LAST
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE callstore.recordings r SET status = 'purged', purged_at = now(), updated_at = now()
    FROM due WHERE r.tenant_id = due.tenant_id AND r.call_id = due.call_id
    RETURNING {", ".join("r." + c.strip() for c in _COLUMNS.split(","))}
"""


async def mark_purged(conn: AsyncConnection, older_than_days: int, tenant: str | None = None,
                      limit: int = 500) -> list[Recording]:
    """Rows of the next batch of candidates become 'purged' (hash, size and the
    audit stay); returns them, so that the caller deletes their files once
    this is committed."""
    rows = await conn.execute(text(_PURGE_BATCH), {"days": older_than_days, "tenant": tenant, "limit": limit})
    return [Recording(*r) for r in rows]


async def recently_purged_keys(conn: AsyncConnection, tenant: str | None = None) -> list[str]:
    """Storage keys of rows purged in the last two days: their files are
    deleted again (a no-op when gone), in case a crash came between the
    commit of the row and the deletion of its file."""
    rows = await conn.execute(text(
        """
        SELECT storage_key FROM callstore.recordings
        WHERE status = 'purged' AND purged_at > now() - interval '2 days' AND storage_key IS NOT NULL
          AND (CAST(:tenant AS text) IS NULL OR tenant_id = CAST(:tenant AS text))
        """), {"tenant": tenant})
    return [r[0] for r in rows]


@dataclass
class Purged:
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, rec: Recording) -> None:
        self.count += 1
        when = rec.call_started_at or rec.stored_at
        if when is not None:
            self.oldest = when if self.oldest is None else min(self.oldest, when)
            self.newest = when if self.newest is None else max(self.newest, when)


async def purge(engine: AsyncEngine, store: RecordingStore, older_than_days: int,
                tenant: str | None = None) -> Purged:
    """Apply retention, in its own transactions: each batch of rows is marked
    'purged' and committed, and only then are its files deleted. A crash in
    between leaves files that no stored row points at (nothing `verify`
    flags), which the next purge deletes; never a stored row without its file."""
    done = Purged()
    async with engine.connect() as conn:
        leftovers = await recently_purged_keys(conn, tenant)
    for key in leftovers:
        await _delete(store, key)
    while True:
        async with engine.begin() as conn:
            batch = await mark_purged(conn, older_than_days, tenant)
        if not batch:
            return done
        for rec in batch:
            if rec.storage_key is not None:
                await _delete(store, rec.storage_key)
            done.add(rec)


async def _delete(store: RecordingStore, key: str) -> None:
    try:
        await store.delete(key)
    except UnsafeKey:
        pass  # never a file of the store: nothing to delete
    except OSError as exc:
        # The row says purged; the file goes on a later purge (within two days).
        log.warning("retention: could not delete %r (%s); the next purge tries again",
                    key, exc.strerror or type(exc).__name__)


async def retention_job(engine: AsyncEngine, settings: Settings) -> dict[str, int]:
    """The daily job: each tenant's `recordings_retention_days` (unset: kept forever)."""
    store = LocalRecordingStore(settings.recordings_dir)
    out: dict[str, int] = {}
    failed: Exception | None = None
    for tenant in settings.tenants:
        days = tenant.recordings_retention_days
        if days is None:
            continue
        try:
            done = await purge(engine, store, days, tenant.tenant_id)
        except Exception as exc:  # noqa: BLE001 - one tenant's failure does not hold back the others'
            log.error("retention of tenant %r failed: %s", tenant.tenant_id, type(exc).__name__)
            failed = failed or exc
            continue
        out[tenant.tenant_id] = done.count
        if done.count:
            log.info("retention: purged %d recordings of tenant %r kept %d days (calls from %s to %s)",
                     done.count, tenant.tenant_id, days,
                     done.oldest.date().isoformat() if done.oldest else "?",
                     done.newest.date().isoformat() if done.newest else "?")
    if failed is not None:
        raise failed  # the run counts as failed, after every tenant had its turn
    return out


def retention_disabled_reason(settings: Settings) -> str | None:
    if not any(t.recordings_retention_days for t in settings.tenants):
        return "no tenant sets recordings_retention_days (CALLSTORE_RECORDINGS_RETENTION_DAYS): recordings are kept forever"
    return None


_ARCHIVE_METRICS = text(
    """
    SELECT 'status' AS kind, tenant_id, status AS label, count(*)::float8 AS value
    FROM callstore.recordings GROUP BY tenant_id, status
    UNION ALL
    SELECT 'oldest', tenant_id, '', extract(epoch FROM now() - min(created_at))::float8
    FROM callstore.recordings WHERE status = 'pending' GROUP BY tenant_id
    UNION ALL
    SELECT 'downloads', tenant_id, outcome, count::float8 FROM callstore.recording_downloads
    ORDER BY 1, 2, 3
    """
)


async def archive_metrics(engine: AsyncEngine) -> str:
    """The archive as Prometheus text for /metrics, read from the shared tables
    at scrape time (so every replica answers the same)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_ARCHIVE_METRICS)).all()
    lines = [
        "# HELP callstore_recordings Recordings in the archive by status",
        "# TYPE callstore_recordings gauge",
        "# HELP callstore_recordings_oldest_pending_age_seconds Age of the oldest recording still to fetch",
        "# TYPE callstore_recordings_oldest_pending_age_seconds gauge",
        "# HELP callstore_recording_downloads_total Download attempts by outcome (stored, retry, failed, expired)",
        "# TYPE callstore_recording_downloads_total counter",
    ]
    for kind, tenant, label, value in rows:
        t = _label(tenant)
        if kind == "status":
            lines.append(f'callstore_recordings{{tenant="{t}",status="{_label(label)}"}} {int(value)}')
        elif kind == "oldest":
            lines.append(f'callstore_recordings_oldest_pending_age_seconds{{tenant="{t}"}} {max(0.0, value):.3f}')
        else:
            lines.append(f'callstore_recording_downloads_total{{tenant="{t}",outcome="{_label(label)}"}} {int(value)}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
