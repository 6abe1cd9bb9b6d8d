"""The recording archive's rows, shared by playback (receiver/), the downloader
(sync/) and the maintenance commands: lookups, the access audit, integrity
checks and retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.recording_store import RecordingStore, UnsafeKey

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
        {**access.__dict__, "complete": access.bytes_planned == 0},
    )
    return int(row_id)


async def close_access(conn: AsyncConnection, access_id: int, bytes_sent: int, complete: bool) -> None:
    """Record what was really sent once the response has ended."""
    await conn.execute(
        text("UPDATE callstore.recording_access SET bytes_sent = :sent, complete = :complete WHERE id = :id"),
        {"id": access_id, "sent": bytes_sent, "complete": complete},
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


async def mark_purged(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> int:
    """The files are gone: rows become 'purged'; hash, size and the audit stay."""
    result = await conn.execute(
        text(
            """
            UPDATE callstore.recordings r SET status = 'purged', purged_at = now(), updated_at = now()
            FROM unnest(CAST(:tenants AS text[]), CAST(:calls AS text[])) AS k(tenant_id, call_id)
            WHERE r.tenant_id = k.tenant_id AND r.call_id = k.call_id AND r.status = 'stored'
            """
        ),
        {"tenants": [k[0] for k in keys], "calls": [k[1] for k in keys]},
    )
    return int(result.rowcount)
