"""The recording access audit over HTTP: refused requests on recording routes
are written to it, and `GET /api/audit/recordings` reads it.

A refused or not-found request for a recording leaves a row with its status
(401, 403, 404, 409) and no bytes, so probing is as visible as playing. The
row's tenant is the token's own; for a request without a valid token, the
tenant it named if callstore knows it, else none (only the operator sees those).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from receiver.auth import caller
from receiver.errors import error
from receiver.openapi import error_responses
from receiver.params import BadParameter, int_param, text_param, when_param
from store.audit import DEFAULT_LIMIT, MAX_LIMIT, AccessQuery, list_accesses
from store.engine import is_unavailable
from store.recordings import Access, open_access
from store.replica import ReadRouting
from store.settings import Settings
from store.tokens import TokenInfo

log = logging.getLogger("callstore.audit")

RECORDINGS_PREFIX = "/api/recordings/"


class RefusalAudit:
    """Writes one audit row per refused request on a recording route."""

    def __init__(self, engine: AsyncEngine, tenant_ids: Sequence[str]) -> None:
        self.engine = engine
        self.tenant_ids = frozenset(tenant_ids)

    async def middleware_refused(self, scope: Scope, status: int, token: TokenInfo | None) -> None:
        """TokenAuth's hook (401): only recording routes are audited."""
        if not scope["path"].startswith(RECORDINGS_PREFIX):
            return
        request = Request(scope)
        asked = request.query_params.get("tenant")
        tenant = token.tenant_id if token is not None and token.tenant_id else (
            asked if asked in self.tenant_ids else None)
        await self.refused(request, status, token, tenant)

    async def refused(self, request: Request, status: int, token: TokenInfo | None, tenant: str | None) -> None:
        call_id = request.url.path[len(RECORDINGS_PREFIX):] if request.url.path.startswith(RECORDINGS_PREFIX) else ""
        access = Access(
            token_id=token.id if token else None, token_name=token.name if token else None, tenant_id=tenant,
            # Bounded and without NUL: the path is the client's.
            call_id=call_id.replace("\x00", "")[:256], client_addr=request.client.host if request.client else None,
            method=request.method[:16], range_header=None, status_code=status, first_byte=None, last_byte=None,
            bytes_planned=0, sha256=None,
        )
        try:
            async with self.engine.begin() as conn:
                await open_access(conn, access)
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the missing row is logged
            if not is_unavailable(exc):
                log.exception("could not audit a refused recording request (status %d)", status)
            else:
                log.error("could not audit a refused recording request (status %d): database unreachable", status)


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


class AuditAPI:
    """`GET /api/audit/recordings` (compliance and admin, the caller's tenant). It reads
    through the read routing: a row written a moment ago may show a moment later."""

    def __init__(self, reads: ReadRouting, settings: Settings) -> None:
        self.reads = reads
        self.zones = {t.tenant_id: t.zone for t in settings.tenants}

    def routes(self) -> list[Route]:
        return [Route("/api/audit/recordings", self.listing, methods=["GET"])]

    async def listing(self, request: Request) -> Response:
        who = caller(request, "compliance")
        try:
            q = parse_query(request.query_params, who.tenant, self.zones.get(who.tenant or "", ZoneInfo("UTC")))
        except BadParameter as exc:
            return error(400, str(exc))
        rows, cursor = await self.reads.run(lambda conn: list_accesses(conn, q))
        return _json({"accesses": rows, "next_cursor": str(cursor) if cursor is not None else None})


def parse_query(params: Any, tenant: str | None, zone: ZoneInfo) -> AccessQuery:
    """The filters of an audit listing; BadParameter names a bad one. Naive times are in `zone`."""
    start, end = (_aware(when_param(params, n), zone) for n in ("from", "to"))
    if start is not None and end is not None and start >= end:
        raise BadParameter("to", "must be after from")
    token = params.get("token")
    return AccessQuery(
        tenant=tenant,
        call_id=text_param(params, "call"),
        token_id=int_param(params, "token", 0, 1, 2**63 - 1) if token else None,
        user_name=text_param(params, "user"),
        start=start, end=end,
        before_id=int_param(params, "cursor", 0, 1, 2**63 - 1) if params.get("cursor") else None,
        limit=int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


def _aware(t: datetime | None, zone: ZoneInfo) -> datetime | None:
    return t.replace(tzinfo=zone) if t is not None and t.tzinfo is None else t


_STR = {"type": "string", "maxLength": 256}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/audit/recordings": {
        "get": {
            "summary": "The recording access audit: plays, downloads and refused requests (newest first)",
            "description": "Compliance or admin role; the token's tenant. Every request on /api/recordings "
                           "leaves a row, refused ones (401, 403, 404, 409) with their status and no bytes. "
                           "`from`/`to` are ISO 8601; without an offset they are in the tenant's zone; `to` is "
                           "exclusive.",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "call", "in": "query", "schema": _STR, "description": "a call id"},
                {"name": "token", "in": "query", "schema": {"type": "integer", "minimum": 1},
                 "description": "an API token id (`callstore tokens list`)"},
                {"name": "user", "in": "query", "schema": _STR, "description": "a console user name"},
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "tenant", "in": "query", "schema": {"type": "string", "maxLength": 64},
                 "description": "only the token's own tenant, or any tenant for an all-tenants token"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                           "default": DEFAULT_LIMIT}},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
                 "description": "next_cursor of the previous page"},
            ],
            "responses": {
                "200": {"description": "a page of audit rows", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["accesses", "next_cursor"],
                    "properties": {"accesses": {"type": "array", "items": {"type": "object"}},
                                   "next_cursor": {"type": ["string", "null"]}},
                }}}},
                **error_responses(400, 401, 403, 404, 503),
            },
        }
    },
}


