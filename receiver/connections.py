"""The HTTP server's connections, bounded in time and in number.

uvicorn closes a keep-alive connection that stays idle between requests, but
it sets no deadline on reading a request's headers: a client that sends one
header line per second, or half a request line and nothing more, holds its
connection (and the memory of what it sent) for ever. Its `limit_concurrency`
answers a plain-text 503 once the request has been read. `GuardedProtocol`,
uvicorn's httptools protocol with three additions, closes those gaps:

- the request line and headers of every request must arrive within
  `http_header_timeout_s` of the connection opening or of the request's first
  byte; otherwise the client gets a 408 and the connection is closed;
- headers still incomplete after 64 KiB get a 431 and the connection is
  closed (httptools sets no limit; within the timeout a fast client could
  otherwise send any amount);
- beyond `http_max_connections` open connections, a new one gets a JSON 503
  with `Retry-After` as soon as it opens, and is closed;
- a connection serves at most `http_keepalive_requests` requests (the last
  response says `Connection: close`), and closes after
  `http_keepalive_timeout_s` idle seconds between requests (uvicorn's own timer).

Bodies are not covered: a slow body holds its request, as behind any server
without a reverse proxy (docs/operations.md says what to put in front).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from store.settings import Settings


def _response(status: str, error: str, detail: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": error, "detail": detail})
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        + extra + b"connection: close\r\n\r\n" + body
    )


_TIMEOUT = _response("408 Request Timeout", "request_timeout", "the request headers did not arrive in time")
_TOO_LARGE = _response("431 Request Header Fields Too Large", "headers_too_large",
                       "the request headers are too large")
#: Bytes of a request's head after which it is refused.
MAX_HEAD_BYTES = 64 * 1024
_BUSY = _response("503 Service Unavailable", "too_many_connections",
                  "the server has too many open connections; retry shortly", b"retry-after: 1\r\n")


class GuardedProtocol(HttpToolsProtocol):
    """One connection. The class attributes are set per server by `guarded_protocol`."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    max_requests: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._requests = 0
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted only while the head is still incomplete after this chunk,
        # so the body that follows the head in one chunk does not count.
        if self._header_deadline is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        # The first byte of a request on a kept-alive connection: its headers
        # have the same time to arrive as the first request's.
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._requests += 1
        super().on_headers_complete()
        if self._requests >= self.max_requests and self.cycle is not None:
            self.cycle.keep_alive = False

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._head_bytes = 0
            self._header_deadline = asyncio.get_running_loop().call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT)
            self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedProtocol]:
    """The protocol class with this deployment's limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {
        "header_timeout_s": float(settings.http_header_timeout_s),
        "max_connections": settings.http_max_connections,
        "max_requests": settings.http_keepalive_requests,
    })


def connection_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config keywords that bound connections."""
    return {"http": guarded_protocol(settings), "timeout_keep_alive": settings.http_keepalive_timeout_s}
