"""Finding calls: the search behind `GET /api/calls` and the detail behind
`GET /api/calls/{call_id}`, over `analytics.calls` (the same definitions BI sees).

Newest first, by keyset pagination on (started_at, tenant_id, call_id); the
cursor is that key, opaque to clients. Calls without a start time sort last.
Within one tenant (every API search) the index `calls_search_order`, on
(tenant_id, coalesce(started_at, '-infinity'), call_id), gives that order:
a page costs its rows, however deep it is.
Every value is a bound parameter; only the shape of the WHERE clause varies.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store import raw_body

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: What the `status` filter accepts: an outcome of analytics.calls, or a
#: call_status Alohub is known to send (compared case-insensitively).
STATUSES = ("answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
            "busy", "cancel", "failed", "hangup", "missed", "noanswer")


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    started_at: datetime | None
    tenant_id: str
    call_id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.started_at.isoformat() if self.started_at else None, self.tenant_id, self.call_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            started, tenant, call = orjson.loads(raw)
            if not isinstance(tenant, str) or not isinstance(call, str) or "\x00" in tenant + call:
                raise ValueError
            at = datetime.fromisoformat(started) if started is not None else None
            if at is not None and at.tzinfo is None:
                raise ValueError
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise BadCursor("cursor is not one this API returned") from None
        return cls(at, tenant, call)


@dataclass(frozen=True)
class CallSearch:
    """Filters of a search. A naive `start`/`end` is local time in each call's tenant zone."""

    start: datetime | None = None
    end: datetime | None = None
    #: The phone number in every form to compare (canonical and as typed).
    phones: tuple[str, ...] = ()
    agent: str | None = None
    #: A queue id, or "unassigned" (inbound calls of no queue).
    queue: int | str | None = None
    #: An outcome (answered, abandoned...) or a call_status as Alohub sent it.
    status: str | None = None
    transaction_id: str | None = None
    tenant: str | None = None
    #: inbound or outbound.
    direction: str | None = None
    #: True: only calls with a stored recording; False: only calls without one.
    has_recording: bool | None = None
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None


_SORT = "coalesce(a.started_at, '-infinity'::timestamptz)"


def _bound(column: str, op: str, value: datetime, name: str, params: dict[str, Any]) -> str:
    params[name] = value
    if value.tzinfo is None:
        return f"{column} {op} (CAST(:{name} AS timestamp) AT TIME ZONE coalesce(t.timezone, 'UTC'))"
    return f"{column} {op} CAST(:{name} AS timestamptz)"


async def search_calls(conn: AsyncConnection, q: CallSearch) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of calls matching `q`, and the cursor of the next page (None at the end)."""
    sql, params = search_sql(q)
    rows = [dict(r._mapping) for r in await conn.execute(text(sql), params)]
    page = rows[: q.limit]
    next_cursor = None
    if len(rows) > q.limit:
        last = page[-1]
        next_cursor = Cursor(last["started_at"], last["tenant_id"], last["call_id"])
    return page, next_cursor


def search_sql(q: CallSearch) -> tuple[str, dict[str, Any]]:
    """The statement of a search and its parameters (one row more than a page)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": q.limit + 1}
    if q.start is not None:
        where.append(_bound("a.started_at", ">=", q.start, "start", params))
    if q.end is not None:
        where.append(_bound("a.started_at", "<", q.end, "end", params))
    if q.phones:
        params["phones"] = list(q.phones)
        where.append("(a.caller_number = ANY(CAST(:phones AS text[])) OR a.destination_number = ANY(CAST(:phones AS text[]))"
                     " OR a.hotline = ANY(CAST(:phones AS text[])))")
    if q.agent is not None:
        params["agent"] = q.agent
        where.append("a.agent = CAST(:agent AS text)")
    if q.queue == "unassigned":
        where.append("a.queue_id IS NULL AND a.direction = 'inbound'")
    elif q.queue is not None:
        params["queue"] = q.queue
        where.append("a.queue_id = CAST(:queue AS bigint)")
    if q.status is not None:
        params["status"] = q.status
        where.append("(a.outcome = lower(CAST(:status AS text)) OR lower(a.call_status) = lower(CAST(:status AS text)))")
    if q.transaction_id is not None:
        params["transaction_id"] = q.transaction_id
        where.append("a.transaction_id = CAST(:transaction_id AS text)")
    # One tenant: its id is fixed, so the key and the order leave it out and
    # match the index; across tenants (no index for that order) it is kept.
    columns = [_SORT, "a.call_id"] if q.tenant is not None else [_SORT, "a.tenant_id", "a.call_id"]
    key = ", ".join(columns)
    if q.tenant is not None:
        params["tenant"] = q.tenant
        where.append("a.tenant_id = CAST(:tenant AS text)")
        # The same time bounds on the index's coalesced start, so that only the
        # range's entries are read (else a range months back walked every newer
        # call: 4 s on 10M). Redundant for the rows (a call without a start is
        # outside every range either way); a naive bound takes the tenant's zone
        # as one value, which an index condition needs.
        zone = "coalesce((SELECT z.timezone FROM callstore.tenants z WHERE z.tenant_id = CAST(:tenant AS text)), 'UTC')"
        for value, op, name in ((q.start, ">=", "start"), (q.end, "<", "end")):
            if value is not None:
                bound = (f"(CAST(:{name} AS timestamp) AT TIME ZONE {zone})" if value.tzinfo is None
                         else f"CAST(:{name} AS timestamptz)")
                where.append(f"{_SORT} {op} {bound}")
    if q.direction is not None:
        params["direction"] = q.direction
        where.append("a.direction = CAST(:direction AS text)")
    if q.has_recording is not None:
        # The view's recording_status, asked directly: filtering on the column
        # itself called its (security definer, not inlinable) function once per
        # call of the tenant, over a minute at 10M calls when few are stored;
        # as a key probe the planner can start from the stored recordings.
        where.append(("" if q.has_recording else "NOT ") + "EXISTS (SELECT 1 FROM callstore.recordings r "
                     "WHERE r.tenant_id = a.tenant_id AND r.call_id = a.call_id AND r.status = 'stored')")
    if q.after is not None:
        params.update(c_at=q.after.started_at.isoformat() if q.after.started_at else "-infinity",
                      c_tenant=q.after.tenant_id, c_call=q.after.call_id)
        after = ("CAST(CAST(:c_at AS text) AS timestamptz), CAST(:c_call AS text)" if q.tenant is not None else
                 "CAST(CAST(:c_at AS text) AS timestamptz), CAST(:c_tenant AS text), CAST(:c_call AS text)")
        where.append(f"({key}) < ({after})")
    order = ", ".join(f"{c} DESC" for c in columns)
    sql = f"""
        SELECT a.* FROM analytics.calls a
        LEFT JOIN callstore.tenants t ON t.tenant_id = a.tenant_id
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY {order}
        LIMIT :limit
    """
    return sql, params


async def find_calls(conn: AsyncConnection, call_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
    """The merged call(s) with this id: one per tenant that has it."""
    sql = "SELECT a.* FROM analytics.calls a WHERE a.call_id = :call_id"
    params: dict[str, Any] = {"call_id": call_id}
    if tenant is not None:
        sql += " AND a.tenant_id = :tenant"
        params["tenant"] = tenant
    return [dict(r._mapping) for r in await conn.execute(text(sql + " ORDER BY a.tenant_id"), params)]


async def call_events(conn: AsyncConnection, tenant: str, call_id: str) -> list[dict[str, Any]]:
    """The call's raw deliveries still kept (raw-event retention drops old
    months), oldest first, as received. Only the call's month and later
    months are read (later ones hold what arrived after retention dropped
    its month)."""
    rows = await conn.execute(
        text(
            """
            SELECT source, received_at, last_received_at, deliveries, flags, body
            FROM callstore.raw_events
            WHERE tenant_id = :tenant AND call_id = :call_id
              AND raw_month >= (SELECT k.raw_month FROM callstore.calls k
                                WHERE k.tenant_id = :tenant AND k.call_id = :call_id)
            ORDER BY received_at, source, body_sha256
            """
        ),
        {"tenant": tenant, "call_id": call_id},
    )
    out = []
    for r in rows:
        event = dict(r._mapping)
        event["payload"] = raw_payload(event.pop("body"))
        out.append(event)
    return out


def raw_payload(stored: bytes) -> Any:
    """A stored raw body as JSON (a body that is not JSON, which the webhook
    never stores, is shown as text)."""
    body = raw_body.unpack(stored)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


async def call_recording(conn: AsyncConnection, tenant: str, call_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(
                """
                SELECT status, sha256, size, attempts, last_error, stored_at, purged_at, next_attempt_at
                FROM analytics.recordings WHERE tenant_id = :tenant AND call_id = :call_id
                """
            ),
            {"tenant": tenant, "call_id": call_id},
        )
    ).first()
    return dict(row._mapping) if row else None
