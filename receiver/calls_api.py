"""`GET /api/calls` (search) and `GET /api/calls/{call_id}` (one call and its raw events).

Both read the caller's tenant only (`receiver.auth.caller`), through the
read routing (the read replica while it is healthy, else the primary). Raw webhook
payloads are for compliance and admin tokens: a reader sees each event's
recording URL without its query string and credentials (a signed media URL
would otherwise hand out the recording), and no payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.auth import caller
from receiver.errors import error
from receiver.openapi import error_responses
from receiver.params import BadParameter, check_text, enum_param, int_param, text_param, when_param
from store.calls_query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    STATUSES,
    BadCursor,
    CallSearch,
    Cursor,
    call_events,
    call_recording,
    find_calls,
    search_calls,
)
from store.local_time import in_zone, tenant_zone
from store.phone import canonical_phone
from store.replica import ReadRouting
from store.settings import Settings


def parse_search(params: Mapping[str, str], settings: Settings, tenant: str | None) -> CallSearch:
    """The search's filters from the query string, in `tenant` (the caller's);
    BadParameter names a bad one. A search reads one tenant, in the order of
    its index: the operator's token names it when several are configured."""
    qp = params
    if tenant is None:
        names = ", ".join(t.tenant_id for t in settings.tenants)
        raise BadParameter("tenant", f"several tenants are configured; name one of {names}")
    known = {t.tenant_id: t for t in settings.tenants}
    start, end = when_param(qp, "from"), when_param(qp, "to")
    if start is not None and end is not None and (start.tzinfo is None) == (end.tzinfo is None) and start >= end:
        raise BadParameter("to", "must be after from")
    phones: tuple[str, ...] = ()
    phone = text_param(qp, "phone", 64)
    if phone is not None:
        cc = known[tenant].country_code if tenant in known else settings.tenants[0].country_code
        canonical = canonical_phone(phone, cc)
        if canonical is None:
            raise BadParameter("phone", f"{phone!r} is not a phone number")
        phones = tuple(dict.fromkeys([canonical, phone.strip()]))
    queue_text = text_param(qp, "queue", 32)
    queue: int | str | None = None
    if queue_text is not None and queue_text.lower() == "unassigned":
        queue = "unassigned"
    elif queue_text is not None:
        queue = int_param(qp, "queue", 0, -(2**63), 2**63 - 1)
    cursor_text = text_param(qp, "cursor", 1024)
    try:
        after = Cursor.decode(cursor_text) if cursor_text is not None else None
    except BadCursor as exc:
        raise BadParameter("cursor", str(exc)) from None
    if after is not None and after.tenant_id != tenant:
        raise BadParameter("cursor", "cursor is not one this API returned for this tenant")
    return CallSearch(
        start=start, end=end, phones=phones, queue=queue, tenant=tenant, after=after,
        agent=text_param(qp, "agent"),
        status=enum_param(qp, "status", STATUSES),
        transaction_id=text_param(qp, "transaction_id"),
        limit=int_param(qp, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


def _json(body: object) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), media_type="application/json")


class CallsAPI:
    def __init__(self, reads: ReadRouting, settings: Settings) -> None:
        self.reads = reads
        self.settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/api/calls", self.search, methods=["GET"]),
            Route("/api/calls/{call_id:path}", self.detail, methods=["GET"]),
        ]

    async def search(self, request: Request) -> Response:
        who = caller(request, "reader")
        try:
            q = parse_search(request.query_params, self.settings, who.tenant)
        except BadParameter as exc:
            return error(400, str(exc))
        calls, cursor = await self.reads.run(lambda conn: search_calls(conn, q))
        calls = [in_zone(c, tenant_zone(self.settings.tenants, c["tenant_id"])) for c in calls]
        return _json({"calls": calls, "next_cursor": cursor.encode() if cursor else None})

    async def detail(self, request: Request) -> Response:
        who = caller(request, "reader")
        try:
            call_id = check_text("call_id", request.path_params["call_id"])
        except BadParameter as exc:
            return error(400, str(exc))
        found, events, recording = await self.reads.run(lambda conn: _call_detail(conn, call_id, who.tenant))
        if len(found) != 1:
            return _not_one(call_id, found)
        call = found[0]
        if not who.token.allows("compliance"):
            events = [_without_payload(e) for e in events]
            if recording and recording.get("last_error"):
                # A download error may quote the URL it failed on.
                recording = {**recording, "last_error": _URL.sub(lambda m: public_url(m.group(0)) or "<url>",
                                                                 recording["last_error"])}
        zone = tenant_zone(self.settings.tenants, call["tenant_id"])
        return _json(in_zone({"call": call, "events": events, "recording": recording}, zone))


async def _call_detail(conn: AsyncConnection, call_id: str, tenant: str | None
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """The calls named `call_id` in `tenant` (None: every tenant) and, when there is exactly one,
    its raw events and its recording's archive state."""
    found = await find_calls(conn, call_id, tenant)
    if len(found) != 1:
        return found, [], None
    tenant_id = found[0]["tenant_id"]
    return found, await call_events(conn, tenant_id, call_id), await call_recording(conn, tenant_id, call_id)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _without_payload(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("payload")
    url = payload.get("recording_url") if isinstance(payload, dict) else None
    return {**event, "payload": None, "recording_url": public_url(url) if isinstance(url, str) and url else None}


def public_url(url: str) -> str | None:
    """`url` without credentials, query string and fragment (what a reader may
    see); None when it does not parse as a URL (Alohub's value is hostile)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _not_one(call_id: str, found: list[dict[str, Any]]) -> Response:
    if not found:
        return error(404, f"no call {call_id!r}")
    tenants = ", ".join(c["tenant_id"] for c in found)
    return error(409, f"call {call_id!r} exists in tenants {tenants}; pass ?tenant=", code="ambiguous")


_STRING = {"type": "string"}
_TENANT = {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64},
           "description": "tenant id: the token's own (default), or any one for an all-tenants admin token; "
                          "another tenant answers 404"}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/calls": {
        "get": {
            "summary": "Search calls (newest first, cursor pagination)",
            "description": "Reader role. `from`/`to` are ISO 8601 dates or date-times; without an offset they "
                           "are in the tenant's zone; `to` is exclusive. `phone` matches caller, destination "
                           "or hotline in any common form. `status` is an outcome or a call_status, "
                           "case-insensitive. Instants are answered with the tenant's offset.",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "phone", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                {"name": "agent", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                {"name": "queue", "in": "query", "schema": {"oneOf": [{"type": "integer"}, {"const": "unassigned"}]}},
                {"name": "status", "in": "query", "schema": {"type": "string", "maxLength": 64},
                 "description": f"one of {', '.join(STATUSES)} (case-insensitive)"},
                {"name": "transaction_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                _TENANT,
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                           "default": DEFAULT_LIMIT}},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 1024},
                 "description": "next_cursor of the previous page"},
            ],
            "responses": {
                "200": {"description": "a page of calls", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["calls", "next_cursor"],
                    "properties": {"calls": {"type": "array", "items": {"type": "object"}},
                                   "next_cursor": {"type": ["string", "null"]}},
                }}}},
                **error_responses(400, 401, 403, 404, 503),
            },
        }
    },
    "/api/calls/{call_id}": {
        "get": {
            "summary": "One merged call, its raw events and its recording's archive state",
            "description": "Reader role. Raw payloads are for compliance and admin tokens; a reader gets each "
                           "event's recording_url without query string and credentials, and payload null.",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "call_id", "in": "path", "required": True, "schema": _STRING},
                _TENANT,
            ],
            "responses": {
                "200": {"description": "the call", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["call", "events", "recording"],
                    "properties": {"call": {"type": "object"}, "events": {"type": "array"},
                                   "recording": {"type": ["object", "null"]}},
                }}}},
                **error_responses(400, 401, 403, 404, 409, 503),
            },
        }
    },
}
