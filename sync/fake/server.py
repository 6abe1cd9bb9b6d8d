"""The fake Alohub as a real HTTP server: the app, a background runner and a foreground one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount

from sync.fake import admin, api, media
from sync.fake.state import FakeState

START_TIMEOUT_S = 10.0


def create_app(state: FakeState) -> Starlette:
    """The Starlette app serving `state`: Alohub's routes plus the ``/_fake/`` controls."""
    return Starlette(
        routes=[*api.routes(state), *media.routes(state), *admin.routes(state)],
        exception_handlers={ClientDisconnect: _gone},
    )


#: Where each tenant of a several-tenant fake is served: ``/t/<name>/...``.
TENANT_PREFIX = "/t/"


def create_multi_app(states: Mapping[str, FakeState]) -> Starlette:
    """One server for several tenants, each its own fake under ``/t/<name>``.

    Every tenant has its own calls, key, rate limits, statistics and fault
    switches (``/t/<name>/_fake/faults``: e.g. ``latency_ms`` makes that one
    tenant slow, ``error_rate`` 1 makes it answer 500 to everything), as if
    each had its own Alohub: point a tenant's ``api_url`` at
    ``<base>/t/<name>/api``, ``xapi_url`` and ``media_url`` at ``<base>/t/<name>``.
    """
    for name in states:
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"tenant name {name!r}: letters, digits, '-', '_' and '.' only")
    return Starlette(
        routes=[Mount(f"{TENANT_PREFIX}{name}", app=create_app(state)) for name, state in states.items()],
        exception_handlers={ClientDisconnect: _gone},
    )


def tenant_base(base_url: str, name: str) -> str:
    """The base URL of one tenant of a several-tenant fake."""
    return f"{base_url}{TENANT_PREFIX}{name}"


async def _gone(request: Request, exc: Exception) -> Response:
    """A client that left before sending its whole body: nobody to answer, and not the fake's fault.

    Without this handler the server logs a traceback for every client that
    times out or is killed mid-request.
    """
    return Response(status_code=400)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now lets connections queue before uvicorn starts accepting.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: Starlette, *, quiet: bool) -> uvicorn.Config:
    if quiet:
        # log_config=None leaves the caller's (or pytest's) logging alone.
        return uvicorn.Config(
            app, lifespan="off", http="h11", ws="none", loop="asyncio",
            access_log=False, log_level="warning", log_config=None, timeout_graceful_shutdown=2,
        )
    return uvicorn.Config(
        app, lifespan="off", http="h11", ws="none", loop="asyncio", access_log=False, timeout_graceful_shutdown=2
    )


class RunningFake:
    """A fake Alohub serving from a background thread; `stop` (or leaving the `with`) ends it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.base_url = _base_url(sock)
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
        self._sock.close()

    def __enter__(self) -> RunningFake:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_server(state: FakeState, host: str = "127.0.0.1", port: int = 0) -> RunningFake:
    """Start serving `state` in a background thread and return once it accepts requests.

    Port 0 picks a free port; read it from the result's `base_url` or `port`.
    """
    return run_app(create_app(state), host, port)


def run_app(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> RunningFake:
    """Serve any Starlette app the same way (e.g. a test's webhook receiver)."""
    sock = _listen(host, port)
    server = uvicorn.Server(_config(app, quiet=True))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-alohub", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=START_TIMEOUT_S)
            sock.close()
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.005)
    return RunningFake(server, thread, sock)


@contextmanager
def running_fake(state: FakeState) -> Iterator[str]:
    """Serve `state` on 127.0.0.1 at a free port; yields the base URL, e.g. ``http://127.0.0.1:41234``."""
    with run_server(state) as fake:
        yield fake.base_url


async def serve_forever(
    state: FakeState, host: str, port: int, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve `state` in the running event loop until interrupted (the CLI's ``serve``)."""
    sock = _listen(host, port)
    try:
        if ready is not None:
            ready(_base_url(sock))
        await uvicorn.Server(_config(create_app(state), quiet=False)).serve(sockets=[sock])
    finally:
        sock.close()
