"""Responses in the shapes Alohub uses: the xapi envelope and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def envelope(records: list[Any], total: int, headers: Mapping[str, str], *, message: bool = True) -> JSONResponse:
    """A success page. The queue sample has no ``error_message``; `message=False` mirrors it."""
    body: dict[str, object] = {"success": "1", "error_code": "SUCCESS"}
    if message:
        body["error_message"] = "SUCCESS"
    body["totalRecord"] = total
    body["data"] = records
    return JSONResponse(body, headers=dict(headers))


def failure(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"success": "0", "error_code": code, "error_message": message}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
