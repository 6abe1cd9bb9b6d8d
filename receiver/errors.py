"""HTTP errors: one JSON shape, `{"error": code, "detail": text}`, for every route.

Status codes are chosen here and in the route modules only.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import orjson

from store.logs import request_id

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error(status: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": code or _CODES.get(status, "error"), "detail": detail})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        detail = f"no route {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error(exc.status_code, detail, headers=dict(exc.headers or {}))


async def unhandled(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (by Starlette), with the request id; the
    # client gets no internals, only the id to quote.
    rid = request_id.get()
    return error(500, f"internal error (request id {rid}); the details are in the server log",
                 headers={"X-Request-ID": rid} if rid else None)
