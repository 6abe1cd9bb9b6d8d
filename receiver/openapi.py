"""`GET /openapi.json`: the API described (OpenAPI 3.1).

The receiver describes its own routes here; routes contributed by other parts
bring their path items in `Extensions.openapi_paths`, so the document always
lists exactly the routes that are mounted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for s in statuses
    }


BASE_PATHS: dict[str, Any] = {
    "/webhooks/alohub": {
        "post": {
            "summary": "Receive one Alohub call event",
            "description": "Authorization must equal a configured webhook key (no Bearer). 200 only once durable.",
            "security": [{"webhookKey": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["call_id"],
                    "properties": {"call_id": {"type": ["string", "integer"]}},
                    "additionalProperties": True,
                }}},
            },
            "responses": {
                "200": {"description": "stored", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"ok": {"type": "boolean"}}}}}},
                **error_responses(400, 401, 413, 503),
            },
        }
    },
    "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {"description": "alive"}}}},
    "/readyz": {"get": {"summary": "Ready to serve", "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics",
                         "description": "Open unless CALLSTORE_METRICS_TOKEN is set; then `Authorization: Bearer "
                                        "<token>`. Counts and timings only, never call data.",
                         "responses": {"200": {"description": "text exposition"}, **error_responses(401)}}},
}


def document(extra_paths: Mapping[str, Any], *, webhook: bool = True) -> dict[str, Any]:
    base = BASE_PATHS if webhook else {k: v for k, v in BASE_PATHS.items() if k != "/webhooks/alohub"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "callstore", "version": "1", "description": "Alohub call history in PostgreSQL"},
        "paths": {**base, **extra_paths},
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "callstore tokens create --role ..."},
                "webhookKey": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
    }


class OpenAPI:
    def __init__(self, extra_paths: Mapping[str, Any], *, webhook: bool = True) -> None:
        self._body = orjson.dumps(document(extra_paths, webhook=webhook))

    async def endpoint(self, request: Request) -> Response:
        return Response(self._body, media_type="application/json")
