"""Request ids: every response carries `X-Request-ID`, every log line of the request too.

A well-formed id sent by the client (a load balancer's, say) is kept, so one
id follows a request across systems; anything else is replaced by a fresh one
(never echoed: a header value is not trusted).
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.logs import request_id

HEADER = b"x-request-id"
#: Request headers larger than this in total are refused (431), as h11 and
#: most proxies do; httptools, uvicorn's fast parser, sets no limit of its own.
MAX_HEADER_BYTES = 16 * 1024
_GOOD = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class RequestId:
    """Pure ASGI middleware (no per-request objects beyond the id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid, too_large = identify(scope)
        if too_large:
            await headers_too_large(send, rid)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, rid)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def identify(scope: Scope) -> tuple[bytes, bool]:
    """The request's id (the client's when well formed, else a fresh one), set for
    this request's log lines; and whether its headers exceed MAX_HEADER_BYTES."""
    rid = b""
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value)
        if name == HEADER and _GOOD.fullmatch(value):
            rid = value
    if not rid:
        rid = secrets.token_hex(8).encode()
    # Set in this request's task; it stays set while errors propagate to the
    # outer handlers, so their log lines and the 500 body carry it too.
    request_id.set(rid.decode())
    return rid, size > MAX_HEADER_BYTES


async def headers_too_large(send: Send, rid: bytes) -> None:
    body = b'{"error":"headers_too_large","detail":"request headers exceed 16 KiB"}'
    await send({"type": "http.response.start", "status": 431, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (HEADER, rid)]})
    await send({"type": "http.response.body", "body": body})
