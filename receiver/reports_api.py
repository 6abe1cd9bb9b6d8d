"""`GET /api/reports/queues` (reader token): queue figures (offered, answered, abandoned, service level...) as JSON or CSV.

The report itself is given by the command line (reports/ owns the SQL); this
module only authenticates, hands over the query parameters and answers.
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
QueueReport = Callable[[Mapping[str, str]], Awaitable[tuple[str, bytes]]]


def report_routes(queue_report: QueueReport) -> list[BaseRoute]:
    async def queues(request: Request) -> Response:
        who = caller(request, "reader")
        params = dict(request.query_params)
        try:
            check_report_params(params)
        except BadParameter as exc:
            return error(400, str(exc))
        if who.tenant is not None:
            params["tenant"] = who.tenant
        try:
            media_type, body = await queue_report(params)
        except ValueError as exc:
            return error(400, str(exc))
        return Response(body, media_type=media_type)

    return [Route("/api/reports/queues", queues, methods=["GET"])]


def check_report_params(params: Mapping[str, str]) -> None:
    """What the database could not hold, refused before the report parses the
    rest: dates out of 1900-2999, queue ids out of bigint, NUL, overlong text."""
    for name, value in params.items():
        check_text(name[:40], value, 64)
    when_param(params, "from")
    when_param(params, "to")
    if params.get("queue") not in (None, "", "unassigned"):
        int_param(params, "queue", 0, 0, 2**63 - 1)


def _param(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


# ISO 8601 as the report accepts it: a date, or a date-time with optional seconds and offset.
_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"

OPENAPI_PATHS: dict[str, Any] = {
    "/api/reports/queues": {
        "get": {
            "summary": "Queue service level, abandoned and serviced figures per bucket",
            "description": "Reads the rollups behind analytics.queue_stats_15m/_hourly/_daily after refreshing them. "
                           "Times without offset are in the tenant's zone; `to` is exclusive.",
            "security": [{"bearer": []}],
            "parameters": [
                _param("from", "first bucket start, ISO 8601 date or date-time", {"type": "string", "pattern": _ISO}, True),
                _param("to", "end (exclusive), ISO 8601; default now", {"type": "string", "pattern": _ISO}),
                _param("interval", "bucket size", {"type": "string", "enum": ["15m", "hour", "day"], "default": "hour"}),
                _param("queue", "queue id (Alohub callinId) or `unassigned`; default all",
                       {"type": "string", "pattern": r"^([0-9]{1,18}|unassigned)$"}),
                _param("tenant", "tenant id: the token's own (default), or any one for an all-tenants admin token, "
                       "which must name one when several are configured; another tenant answers 404",
                       {"type": "string", "maxLength": 64}),
                _param("format", "response format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
            ],
            "responses": {
                "200": {
                    "description": "one row per queue and bucket with at least one offered call",
                    "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}},
                },
                **error_responses(400, 401, 403),
            },
        }
    }
}
