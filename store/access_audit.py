"""Reading the recording access audit (who played or downloaded which
recording, when, and whether it was served), always within one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MAX_ROWS = 1000


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: str
    user: str | None = None
    call_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 200


async def list_access(conn: AsyncConnection, f: AuditFilter) -> list[dict[str, Any]]:
    """Audit rows of the tenant matching `f`, newest first. `user` matches the
    console user's name or the API token's name."""
    where = ["tenant_id = :tenant"]
    params: dict[str, Any] = {"tenant": f.tenant_id, "limit": min(f.limit, MAX_ROWS)}
    if f.user is not None:
        where.append("(user_name = :user OR token_name = :user)")
        params["user"] = f.user
    if f.call_id is not None:
        where.append("call_id = :call")
        params["call"] = f.call_id
    if f.start is not None:
        where.append("accessed_at >= :start")
        params["start"] = f.start
    if f.end is not None:
        where.append("accessed_at < :end")
        params["end"] = f.end
    sql = f"""
        SELECT id, accessed_at, user_name, token_name, call_id, client_addr, method, range_header, status_code,
               bytes_sent, complete
        FROM callstore.recording_access WHERE {" AND ".join(where)}
        ORDER BY accessed_at DESC, id DESC LIMIT :limit
    """
    return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def name_user(conn: AsyncConnection, access_id: int, user_name: str) -> None:
    """Name the console user on an audit row written by store.recordings.open_access."""
    await conn.execute(text("UPDATE callstore.recording_access SET user_name = :u WHERE id = :id"),
                       {"u": user_name, "id": access_id})
