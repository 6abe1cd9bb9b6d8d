"""`callstore serve` and `callstore migrate`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions, build_jobs
from callstore.runtime import database, read_routing, run_async
from callstore.scheduler import Scheduler
from receiver.app import create_app
from receiver.connections import connection_options
from receiver.metrics import Metrics
from store import migrate
from store.errors import ConfigError
from store.settings import Settings
from store.tokens import tokens_to_reissue

log = logging.getLogger("callstore.serve")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the receiver and the scheduler")
    p.add_argument("--role", choices=("all", "receiver", "scheduler"), default="all",
                   help="all (default), receiver (webhook and API, no jobs) or scheduler "
                        "(jobs; serves only /healthz, /readyz and /metrics)")
    p.set_defaults(func=_serve)
    m = sub.add_parser("migrate", help="apply database migrations")
    m.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> None:
        async with database(settings, create=True) as engine:
            print(f"database at revision {', '.join(sorted(await migrate.current_revisions(engine)))}")

    run_async(go())
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    run_async(serve(settings, args.role))
    return 0


async def serve(settings: Settings, role: str) -> None:
    # The port first: taken, it is a one-line error (exit 2) before anything
    # starts or says "listening"; held from here on, nobody can take it meanwhile.
    listener = _listen_socket(settings.host, settings.port, reuse_port=settings.reuse_port)
    try:
        await _serve_on(settings, role, listener)
    finally:
        listener.close()


async def _serve_on(settings: Settings, role: str, listener: socket.socket) -> None:
    # A receiver has a spool: it starts, and acknowledges webhooks, even while
    # an external database is down (events go to the spool); jobs skip their runs meanwhile.
    # A scheduler alone has nothing to do without the database.
    async with (database(settings, pool_size=pool_size(settings), tolerate_outage=role in ("all", "receiver"),
                         create=True, supervise=True) as engine,
                read_routing(settings, engine, pool_size=pool_size(settings)) as reads):
        metrics = Metrics()
        ext = build_extensions(settings, engine, role, metrics, reads=reads)
        if role in ("all", "scheduler"):
            scheduler = Scheduler(engine, settings, build_jobs(settings),
                                  on_run=lambda job, outcome: metrics.job_runs.labels(job, outcome).inc())

            @contextlib.asynccontextmanager
            async def run_scheduler() -> AsyncIterator[None]:
                scheduler.start()
                try:
                    yield
                finally:
                    scheduler.shutdown()

            ext.lifespans = [*ext.lifespans, run_scheduler]
        if not any(t.webhook_keys for t in settings.tenants):
            log.warning("ALOHUB_WEBHOOK_KEYS is not set: the webhook answers 401 to every delivery")
        await _warn_tokens_to_reissue(engine)
        app = create_app(settings, engine, ext, metrics)
        server = uvicorn.Server(server_config(app, settings))
        # On SIGTERM uvicorn stops accepting, finishes in-flight requests, runs
        # the lifespan shutdown (batch writer, spool drainer, scheduler), then
        # raises the signal again. With this no-op handler installed, that
        # re-raise does nothing: a requested stop ends with exit code 0.
        signal.signal(signal.SIGTERM, _stopped)
        log.info("callstore %s listening on http://%s:%s", role, settings.host, listener.getsockname()[1])
        await server.serve(sockets=[listener])
        if not server.started:
            raise RuntimeError("the server did not start; the reason is logged above")
        log.info("callstore %s stopped", role)


def pool_size(settings: Settings) -> int:
    """Connections kept open (as many again may be opened at peaks): 20, or more
    when many tenants run at once. A tenant's backfill writes with up to 2
    connections; the other jobs and the webhook's batches take one at a time."""
    return max(20, 2 * settings.tenant_concurrency + 8)


async def _warn_tokens_to_reissue(engine: AsyncEngine) -> None:
    try:
        async with engine.connect() as conn:
            count = await tokens_to_reissue(conn)
    except Exception:  # noqa: BLE001 - the database may be down at start (a receiver spools); said elsewhere
        return
    if count:
        log.warning("%d API token(s) belong to no tenant (created before tokens had one, with several tenants "
                    "configured) and are refused: re-issue them with `callstore tokens create --tenant T`", count)


def server_config(app: object, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings. X-Forwarded-For and -Proto are believed only from
    CALLSTORE_TRUSTED_PROXIES (uvicorn alone trusts 127.0.0.1): else any local
    process, or a proxy passing the header through, could choose the client
    address that the recording audit keeps."""
    proxies = settings.trusted_proxies
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,  # type: ignore[arg-type]
        lifespan="on", timeout_graceful_shutdown=20, server_header=False,
        proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) if proxies else "",
        **connection_options(settings),
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do."""


def _listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """The bound listening socket, or a ConfigError naming the setting to change.

    With `reuse_port`, other processes may bind the same address (the kernel
    spreads connections over them).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart needs no TIME_WAIT pause
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError("CALLSTORE_PORT", f"{host}:{port} is already in use by another process; stop it "
                                                "or choose another CALLSTORE_PORT") from None
        if exc.errno == errno.EACCES:
            raise ConfigError("CALLSTORE_PORT", f"permission denied to listen on port {port}; ports below 1024 "
                                                "need privileges: choose a higher CALLSTORE_PORT") from None
        raise ConfigError("CALLSTORE_HOST", f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                            "use an address of this machine") from None
    sock.set_inheritable(True)
    return sock
