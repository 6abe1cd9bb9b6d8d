"""The fake's API routes: searchCallV2, the gateway's call logs, queue list and campaigns.

Request shapes that Alohub has not published are assumptions kept here:
searchCallV2 takes ``starttime``/``endtime`` (ISO 8601 with offset, both ends
inclusive on the call's start), ``page`` from 1 and ``limit``, like its V1
sibling; ``/v1/reports/call-logs`` answers with the same record shape.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.fake.campaigns import Handlers as CampaignHandlers
from sync.fake.index import Record
from sync.fake.responses import envelope, failure
from sync.fake.state import FakeState

SEARCH_CALL_V2 = "searchCallV2"
CALL_LOGS = "call-logs"
QUEUES = "queues"
CAMPAIGNS = "campaigns"
DEFAULT_PAGE_SIZE = 50
#: How often a held answer looks whether the hold was switched off.
HOLD_POLL_S = 0.02
DEFAULT_QUEUE_PAGE_SIZE = 20

Build = Callable[[Request, dict[str, str]], Awaitable[Response]]


class BadRequest(ValueError):
    """A request body or query the fake refuses with 400 BAD_REQUEST."""


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _whole(value: object, name: str, default: int, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _instant(body: Mapping[str, object], name: str, required: bool) -> datetime | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} is required: an ISO 8601 date-time with offset, e.g. 2026-04-14T00:00:00+07:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} must carry a UTC offset, e.g. +07:00: {value!r}")
    return moment


async def _json_object(request: Request) -> dict[str, object]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _canonical_phone(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    if digits.startswith("84") and len(digits) >= 11:
        return "0" + digits[2:]
    return digits


def _phones(record: Record) -> tuple[str, str]:
    return (
        _canonical_phone(str(record.get("caller_number", ""))),
        _canonical_phone(str(record.get("destination_number", ""))),
    )


def _page(records: list[Record], page: int, limit: int, headers: dict[str, str]) -> Response:
    offset = (page - 1) * limit
    return envelope(records[offset : offset + limit], len(records), headers)


async def _serve(state: FakeState, request: Request, route: str, auth_error: str | None, build: Build) -> Response:
    state.stats.requests[route] += 1
    response = await _gated(state, request, route, auth_error, build)
    state.stats.observe_status(response.status_code)
    return response


async def _gated(state: FakeState, request: Request, route: str, auth_error: str | None, build: Build) -> Response:
    # Authentication comes before rate limiting, as Kong runs key-auth first.
    if auth_error is not None:
        return failure(401, "UNAUTHORIZED", auth_error)
    decision = state.limiter.check(route, state.clock(), state.tenant_limit, state.route_limit, state.stats)
    headers = dict(decision.headers)
    if not decision.allowed:
        state.stats.exceeded += 1
        headers["Retry-After"] = str(decision.retry_after)
        return failure(429, "RATE_LIMIT_EXCEEDED", "Exceeded request limit", headers)
    if state.faults.latency_ms:
        await asyncio.sleep(state.faults.latency_ms / 1000)
    while state.faults.hold:
        await asyncio.sleep(HOLD_POLL_S)
    injected = state.faults.roll()
    if injected == 500:
        return failure(500, "FAIL", "System error", headers)
    if injected == 429:
        return failure(429, "RATE_LIMIT_EXCEEDED", "Exceeded request limit", {**headers, "Retry-After": "1"})
    try:
        return await build(request, headers)
    except BadRequest as exc:
        return failure(400, "BAD_REQUEST", str(exc), headers)


def routes(state: FakeState) -> list[Route]:
    def call_api_auth(request: Request) -> str | None:
        if _same(request.headers.get("authorization"), state.api_key):
            return None
        return "Authorization header must be the raw API key"

    def gateway_auth(request: Request) -> str | None:
        if not _same(request.headers.get("x-api-key"), state.api_key):
            return "X-Api-Key header missing or wrong"
        tenant = request.headers.get("x-tenant-id")
        if tenant is not None and state.tenant_id is not None and tenant != state.tenant_id:
            return "X-Tenant-ID does not match the key's tenant"
        return None

    async def search_page(request: Request, headers: dict[str, str]) -> Response:
        body = await _json_object(request)
        start = _instant(body, "starttime", required=True)
        end = _instant(body, "endtime", required=True)
        page = _whole(body.get("page"), "page", 1, 1)
        limit = min(_whole(body.get("limit"), "limit", DEFAULT_PAGE_SIZE, 1), state.max_limit)
        records = state.calls.window(start, end)
        call_id = body.get("call_id")
        if isinstance(call_id, str) and call_id:
            records = [r for r in records if r.get("call_id") == call_id]
        direction = body.get("direction")
        if isinstance(direction, str) and direction:
            records = [r for r in records if str(r.get("direction", "")).lower() == direction.lower()]
        return _page(records, page, limit, headers)

    async def call_logs_page(request: Request, headers: dict[str, str]) -> Response:
        body = await _json_object(request)
        start = _instant(body, "callStartTime", required=False)
        # callEndtime, lowercase t: the real backend silently ignores callEndTime.
        end = _instant(body, "callEndtime", required=False)
        page = _whole(body.get("page"), "page", 1, 1)
        limit = min(_whole(body.get("limit"), "limit", DEFAULT_PAGE_SIZE, 1), state.max_limit)
        records = state.calls.window(start, end)
        call_type = body.get("callType")
        if call_type is not None and call_type != "":
            if call_type not in (0, 1) or isinstance(call_type, bool):
                raise BadRequest(f"callType must be 0 (inbound) or 1 (outbound), got {call_type!r}")
            wanted = "inbound" if call_type == 0 else "outbound"
            records = [r for r in records if str(r.get("direction", "")).lower() == wanted]
        phone = body.get("phoneNumber")
        if isinstance(phone, str) and phone:
            key = _canonical_phone(phone)
            records = [r for r in records if key in _phones(r)]
        return _page(records, page, limit, headers)

    async def queues_page(request: Request, headers: dict[str, str]) -> Response:
        page = _whole(request.query_params.get("page"), "page", 0, 0)
        size = min(_whole(request.query_params.get("size"), "size", DEFAULT_QUEUE_PAGE_SIZE, 1), state.max_limit)
        records = [q.to_record() for q in state.queues]
        return envelope(records[page * size : (page + 1) * size], len(records), headers, message=False)

    async def search_call_v2(request: Request) -> Response:
        return await _serve(state, request, SEARCH_CALL_V2, call_api_auth(request), search_page)

    async def call_logs(request: Request) -> Response:
        return await _serve(state, request, CALL_LOGS, gateway_auth(request), call_logs_page)

    async def queues(request: Request) -> Response:
        return await _serve(state, request, QUEUES, gateway_auth(request), queues_page)

    camp = CampaignHandlers(state.campaigns, state.max_limit)

    def campaign_route(path: str, build: Build, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _serve(state, request, CAMPAIGNS, gateway_auth(request), build)
        return Route(path, endpoint, methods=[method])

    base = "/v1/campaigns/{campaign_id}"
    return [
        campaign_route(base + "/contact-lists", camp.lists, "GET"),
        campaign_route(base + "/contact-lists/{list_id}/contacts", camp.contacts, "GET"),
        campaign_route(base + "/contacts", camp.add, "POST"),
        campaign_route(base + "/contacts/bulk", camp.bulk, "POST"),
        campaign_route(base + "/contacts/import/{job_id}", camp.job, "GET"),
        campaign_route(base + "/contacts/{contact_id}", camp.delete, "DELETE"),
        Route("/api/v1.0/base/searchCallV2", search_call_v2, methods=["POST"]),
        Route("/v1/reports/call-logs", call_logs, methods=["POST"]),
        Route("/v1/queues/inbound", queues, methods=["GET"]),
    ]
