"""The fake recording server: ``GET /IPCCMedia/MP3Export.do?url=<path>&source=ipcc``."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sync.fake.faults import MediaFault
from sync.fake.mp3 import chunked, recording_bytes
from sync.fake.responses import JSONResponse, failure
from sync.fake.state import FakeState

EXPORT_PATH = "/IPCCMedia/MP3Export.do"
MOVED_PATH = "/IPCCMedia/moved/MP3Export.do"
FOREIGN_LOCATION = "http://evil.example.invalid/x.mp3"
CHUNK_SIZE = 16 * 1024

ERROR_PAGE = "<html><head><title>Error</title></head><body><h1>File not found</h1></body></html>"


class TruncatedResponse(Response):
    """Declares the full Content-Length, sends half the body, then drops the connection."""

    def __init__(self, data: bytes) -> None:
        super().__init__(status_code=200, media_type="audio/mpeg")
        self.data = data
        self.raw_headers = [
            (b"content-type", b"audio/mpeg"),
            (b"content-length", str(len(data)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.data[: len(self.data) // 2], "more_body": True})
        # Returning without the final body message makes the server close the connection.


def _audio(data: bytes, delay_s: float = 0.0) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for piece in chunked(data, CHUNK_SIZE):
            if delay_s:
                await asyncio.sleep(delay_s)
            yield piece

    return StreamingResponse(body(), media_type="audio/mpeg", headers={"Content-Length": str(len(data))})


def _faulty(request: Request, path: str, fault: MediaFault, data: bytes) -> Response:
    kind = fault.kind
    fault.served += 1
    if kind == "html200":
        return HTMLResponse(ERROR_PAGE)
    if kind == "json200":
        return JSONResponse({"success": "0", "error_code": "NOT_FOUND", "error_message": "File not found"})
    if kind == "truncated":
        return TruncatedResponse(data)
    if kind == "404":
        return HTMLResponse(ERROR_PAGE, status_code=404)
    if kind == "500_then_ok" and fault.served <= fault.amount:
        return HTMLResponse("<html><body>Internal Server Error</body></html>", status_code=500)
    if kind == "redirect_foreign":
        return RedirectResponse(FOREIGN_LOCATION, status_code=302)
    if kind == "redirect_same":
        target = request.url.replace(path=MOVED_PATH)
        return RedirectResponse(str(target), status_code=302)
    if kind == "slow":
        pieces = max(1, -(-len(data) // CHUNK_SIZE))
        return _audio(data, delay_s=fault.amount / 1000 / pieces)
    return _audio(data)


def routes(state: FakeState) -> list[Route]:
    def check(request: Request) -> tuple[str, Response | None]:
        state.stats.requests["media"] += 1
        path = request.query_params.get("url", "")
        if not path:
            return path, HTMLResponse("<html><body>url is required</body></html>", status_code=400)
        state.stats.media_by_path[path] += 1
        given = request.headers.get("authorization")
        if state.media_auth and (given is None or not hmac.compare_digest(given.encode(), state.api_key.encode())):
            return path, failure(401, "UNAUTHORIZED", "Authorization header must be the raw API key")
        return path, None

    def respond(request: Request, moved: bool) -> Response:
        path, refused = check(request)
        if refused is not None:
            return refused
        fault = None if moved else state.faults.media.get(path)
        if fault is not None:
            return _faulty(request, path, fault, recording_bytes(path, state.media_size))
        if not moved and path not in state.calls.media_paths:
            return HTMLResponse(ERROR_PAGE, status_code=404)
        return _audio(recording_bytes(path, state.media_size))

    async def export(request: Request) -> Response:
        response = respond(request, moved=False)
        state.stats.observe_status(response.status_code)
        return response

    async def moved(request: Request) -> Response:
        response = respond(request, moved=True)
        state.stats.observe_status(response.status_code)
        return response

    return [
        Route(EXPORT_PATH, export, methods=["GET"]),
        Route(MOVED_PATH, moved, methods=["GET"]),
    ]
