"""Reading the recording access audit (`callstore.recording_access`): the
route `GET /api/audit/recordings` and `callstore audit list`.

Newest first, by keyset pagination on the row id (the cursor is the last id
seen); within a tenant the primary key (tenant_id, id) serves the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

COLUMNS = ("id", "accessed_at", "tenant_id", "call_id", "token_id", "token_name", "user_name", "client_addr",
           "method", "range_header", "status_code", "first_byte", "last_byte", "bytes_planned", "bytes_sent",
           "complete", "sha256")


@dataclass(frozen=True)
class AccessQuery:
    #: None: every tenant (the operator), refused requests without a tenant included.
    tenant: str | None
    call_id: str | None = None
    token_id: int | None = None
    user_name: str | None = None
    #: Time range, start inclusive and end exclusive (aware datetimes).
    start: datetime | None = None
    end: datetime | None = None
    #: Rows with a smaller id than this (the previous page's cursor).
    before_id: int | None = None
    limit: int = DEFAULT_LIMIT


async def list_accesses(conn: AsyncConnection, q: AccessQuery) -> tuple[list[dict[str, Any]], int | None]:
    """One page of audit rows, newest first, and the cursor of the next page (None at the end)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": q.limit + 1}
    filters: tuple[tuple[str, object, str], ...] = (
        ("tenant_id", q.tenant, "text"), ("call_id", q.call_id, "text"), ("token_id", q.token_id, "bigint"),
        ("user_name", q.user_name, "text"),
    )
    for column, value, sql_type in filters:
        if value is not None:
            params[column] = value
            where.append(f"{column} = CAST(:{column} AS {sql_type})")
    if q.start is not None:
        params["start"] = q.start
        where.append("accessed_at >= :start")
    if q.end is not None:
        params["end"] = q.end
        where.append("accessed_at < :end")
    if q.before_id is not None:
        params["before"] = q.before_id
        where.append("id < :before")
    # A refusal that named no known tenant is stored under '' (tenant_id is part of the key) and shown as null.
    select_list = ", ".join("NULLIF(tenant_id, '') AS tenant_id" if c == "tenant_id" else c for c in COLUMNS)
    sql = f"""
        SELECT {select_list} FROM callstore.recording_access
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY id DESC LIMIT :limit
    """
    rows = [dict(r._mapping) for r in await conn.execute(text(sql), params)]
    page = rows[: q.limit]
    return page, (page[-1]["id"] if len(rows) > q.limit else None)
