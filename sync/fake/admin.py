"""Test-only control routes under ``/_fake/``: ground truth, stats, faults, settings.

They take no credentials: the fake listens on a loopback address for tests,
demos and benchmarks only.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.fake.history import FakeQueue
from sync.fake.index import CallIndex
from sync.fake.mp3 import recording_digest
from sync.fake.responses import JSONResponse
from sync.fake.stats import Stats
from sync.fake.state import FakeState

SETTINGS: tuple[str, ...] = ("max_limit", "tenant_limit", "route_limit", "media_size", "media_auth")


def _problem(message: str) -> JSONResponse:
    return JSONResponse({"error": "bad_request", "detail": message}, status_code=400)


async def _body(request: Request) -> object:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ValueError("body must be JSON") from None


def _settings(state: FakeState) -> dict[str, object]:
    return {name: getattr(state, name) for name in SETTINGS}


def _apply_settings(state: FakeState, body: Mapping[str, object]) -> None:
    unknown = set(body) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; expected some of {list(SETTINGS)}")
    for name, value in body.items():
        if name == "media_auth":
            if not isinstance(value, bool):
                raise ValueError(f"media_auth must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "max_limit" else 0):
            raise ValueError(f"{name} must be a whole number (>= 1 for max_limit, else >= 0), got {value!r}")
    for name, value in body.items():
        setattr(state, name, value)


def routes(state: FakeState) -> list[Route]:
    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.as_json())

    async def reset_stats(request: Request) -> Response:
        state.stats = Stats()
        state.limiter.forget_arrivals()
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await _body(request)
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                state.faults.update(body)
            except ValueError as exc:
                return _problem(str(exc))
        return JSONResponse(state.faults.as_json())

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await _body(request)
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                _apply_settings(state, body)
            except ValueError as exc:
                return _problem(str(exc))
        return JSONResponse(_settings(state))

    async def queues(request: Request) -> Response:
        try:
            body = await _body(request)
            if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
                raise ValueError("body must be a JSON list of queue records (callinId, callinName, callinNumber)")
            state.queues = [FakeQueue.from_record(item) for item in body]
        except ValueError as exc:
            return _problem(str(exc))
        return JSONResponse({"ok": True, "queues": len(state.queues)})

    async def calls(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.calls.records)
        mode = request.query_params.get("mode", "replace")
        try:
            body = await _body(request)
            if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
                raise ValueError("body must be a JSON list of call records")
            if mode == "replace":
                state.calls = CallIndex(body, state.calls.tz)
            elif mode == "extend":
                state.calls = state.calls.extended(body)
            else:
                raise ValueError(f"mode must be replace or extend, got {mode!r}")
        except ValueError as exc:
            return _problem(str(exc))
        return JSONResponse({"ok": True, "calls": len(state.calls)})

    async def media_sha256(request: Request) -> Response:
        path = request.query_params.get("url", "")
        if not path:
            return _problem("url is required")
        digest, size = recording_digest(path, state.media_size)
        return JSONResponse({"url": path, "sha256": digest, "size": size})

    return [
        Route("/_fake/stats", stats, methods=["GET"]),
        Route("/_fake/reset-stats", reset_stats, methods=["POST"]),
        Route("/_fake/faults", faults, methods=["GET", "POST"]),
        Route("/_fake/settings", settings, methods=["GET", "POST"]),
        Route("/_fake/queues", queues, methods=["POST"]),
        Route("/_fake/calls", calls, methods=["GET", "POST"]),
        Route("/_fake/media-sha256", media_sha256, methods=["GET"]),
    ]
