"""`GET /api/reports/queues`, `/api/reports/agents` and `/api/reports/campaigns` (reader token): JSON, CSV (or xlsx).

The reports themselves are given by the command line (reports/ owns the SQL);
this module only authenticates, hands over the query parameters and answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from receiver.auth import caller
from receiver.errors import error
from receiver.openapi import error_responses
from receiver.params import BadParameter, check_text, int_param, when_param

#: (query parameters) -> (media type, body); raises ValueError naming a bad parameter.
Report = Callable[[Mapping[str, str]], Awaitable[tuple[str, bytes]]]


def _endpoint(report: Report) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        who = caller(request, "reader")
        params = dict(request.query_params)
        try:
            check_report_params(params)
        except BadParameter as exc:
            return error(400, str(exc))
        if who.tenant is not None:
            params["tenant"] = who.tenant
        try:
            media_type, body = await report(params)
        except ValueError as exc:
            return error(400, str(exc))
        return Response(body, media_type=media_type)

    return answer


def report_routes(queue_report: Report, agent_report: Report | None = None,
                  campaign_report: Report | None = None) -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/api/reports/queues", _endpoint(queue_report), methods=["GET"])]
    if agent_report is not None:
        routes.append(Route("/api/reports/agents", _endpoint(agent_report), methods=["GET"]))
    if campaign_report is not None:
        routes.append(Route("/api/reports/campaigns", _endpoint(campaign_report), methods=["GET"]))
    return routes


def check_report_params(params: Mapping[str, str]) -> None:
    """What the database could not hold, refused before the report parses the
    rest: dates out of 1900-2999, queue ids out of bigint, NUL, overlong text."""
    for name, value in params.items():
        check_text(name[:40], value, 256 if name == "queue" else 64)
    when_param(params, "from")
    when_param(params, "to")
    queue = params.get("queue") or ""
    if queue.isdigit():
        int_param(params, "queue", 0, 0, 2**63 - 1)


def _param(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


# ISO 8601 as the report accepts it: a date, or a date-time with optional seconds and offset.
_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CONTENT = {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}},
            _XLSX: {"schema": {"type": "string", "format": "binary"}}}
_TENANT = _param("tenant", "tenant id: the token's own (default), or any one for an all-tenants admin token, "
                 "which must name one when several are configured; another tenant answers 404",
                 {"type": "string", "maxLength": 64})
_FORMAT = _param("format", "response format, case-insensitive",
                 {"type": "string", "enum": ["json", "csv", "xlsx"], "default": "json"})

OPENAPI_PATHS: dict[str, Any] = {
    "/api/reports/queues": {
        "get": {
            "summary": "Queue service level, abandoned and answered calls per queue and period, with totals",
            "description": "Reads analytics.queue_stats_15m/_hourly/_daily/_weekly/_monthly. Times without offset "
                           "are in the tenant's zone; `to` is exclusive; weeks start on Monday and weeks and "
                           "months are local. Instants are answered with the tenant's offset. The totals are "
                           "recomputed from summed counts, never averaged.",
            "security": [{"bearer": []}],
            "parameters": [
                _param("from", "first bucket start, ISO 8601 date or date-time", {"type": "string", "pattern": _ISO}, True),
                _param("to", "end (exclusive), ISO 8601; default now", {"type": "string", "pattern": _ISO}),
                _param("interval", "bucket size, case-insensitive",
                       {"type": "string", "enum": ["15m", "hour", "day", "week", "month"], "default": "hour"}),
                _param("queue", "queue id (Alohub callinId), queue name or `unassigned`; default all. "
                                "A queue the tenant does not have is a 400",
                       {"type": "string", "maxLength": 256}),
                _TENANT,
                _FORMAT,
            ],
            "responses": {
                "200": {"description": "one row per queue and bucket with at least one offered call", "content": _CONTENT},
                **error_responses(400, 401, 403, 404),
            },
        }
    },
    "/api/reports/agents": {
        "get": {
            "summary": "Per agent and local day: answered, outbound, talk, hold and average handle time, with totals",
            "description": "Reads analytics.agent_daily (an incrementally maintained rollup). `from` and `to` "
                           "are local days (a date-time counts as its local day); `to` is exclusive and "
                           "defaults to tomorrow.",
            "security": [{"bearer": []}],
            "parameters": [
                _param("from", "first local day, ISO 8601", {"type": "string", "pattern": _ISO}, True),
                _param("to", "day after the last (exclusive), ISO 8601", {"type": "string", "pattern": _ISO}),
                _param("agent", "one agent's user name; default all", {"type": "string", "maxLength": 256}),
                _TENANT,
                _FORMAT,
            ],
            "responses": {
                "200": {"description": "one row per agent and day with at least one call", "content": _CONTENT},
                **error_responses(400, 401, 403, 404),
            },
        }
    },
    "/api/reports/campaigns": {
        "get": {
            "summary": "Outbound campaign figures per campaign and local day",
            "description": "Reads analytics.campaign_daily. Days are the tenant's local days; `to` is exclusive.",
            "security": [{"bearer": []}],
            "parameters": [
                _param("from", "first local day, ISO 8601 date", {"type": "string", "pattern": _ISO}, True),
                _param("to", "end day (exclusive), ISO 8601 date; default tomorrow",
                       {"type": "string", "pattern": _ISO}),
                _param("campaign", "campaign id; default every followed campaign",
                       {"type": "string", "pattern": r"^[0-9]{1,18}$"}),
                _TENANT,
                _param("format", "response format, case-insensitive",
                       {"type": "string", "enum": ["json", "csv"], "default": "json"}),
            ],
            "responses": {
                "200": {
                    "description": "one row per campaign and local day",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/csv": {"schema": {"type": "string"}}},
                },
                **error_responses(400, 401, 403, 404),
            },
        }
    },
}
