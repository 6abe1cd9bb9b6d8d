"""`GET /api/reports/queues` and `/api/reports/campaigns` (reader token): figures as JSON or CSV.

The report itself is given by the command line (reports/ owns the SQL); this
module only authenticates, hands over the query parameters and answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from receiver.auth import require
from receiver.errors import error
from receiver.openapi import error_responses

#: (query parameters) -> (media type, body); raises ValueError naming a bad parameter.
QueueReport = Callable[[Mapping[str, str]], Awaitable[tuple[str, bytes]]]


def report_routes(queue_report: QueueReport, campaign_report: QueueReport | None = None) -> list[BaseRoute]:
    def endpoint(report: QueueReport) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            require(request, "reader")
            try:
                media_type, body = await report(dict(request.query_params))
            except ValueError as exc:
                return error(400, str(exc))
            return Response(body, media_type=media_type)
        return answer

    routes: list[BaseRoute] = [Route("/api/reports/queues", endpoint(queue_report), methods=["GET"])]
    if campaign_report is not None:
        routes.append(Route("/api/reports/campaigns", endpoint(campaign_report), methods=["GET"]))
    return routes


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
                _param("tenant", "tenant id; required when several are configured", {"type": "string"}),
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
                _param("tenant", "tenant id; required when several are configured", {"type": "string"}),
                _param("format", "response format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
            ],
            "responses": {
                "200": {
                    "description": "one row per campaign and local day",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/csv": {"schema": {"type": "string"}}},
                },
                **error_responses(400, 401, 403),
            },
        }
    },
}
