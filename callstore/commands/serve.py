"""`callstore serve` and `callstore migrate`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn

from callstore.composition import build_extensions, build_jobs
from callstore.runtime import database, run_async
from callstore.scheduler import Scheduler
from receiver.app import create_app
from receiver.connections import connection_options
from receiver.metrics import Metrics
from store import migrate
from store.settings import Settings

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
        async with database(settings) as engine:
            print(f"database at revision {', '.join(sorted(await migrate.current_revisions(engine)))}")

    run_async(go())
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    run_async(serve(settings, args.role))
    return 0


async def serve(settings: Settings, role: str) -> None:
    # A receiver has a spool: it starts, and acknowledges webhooks, even while
    # an external database is down (SPEC 5.4); jobs skip their runs meanwhile.
    # A scheduler alone has nothing to do without the database.
    async with database(settings, pool_size=20, tolerate_outage=role in ("all", "receiver")) as engine:
        metrics = Metrics()
        ext = build_extensions(settings, engine, role, metrics)
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
        app = create_app(settings, engine, ext, metrics)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False,
            lifespan="on", timeout_graceful_shutdown=20, server_header=False, **connection_options(settings),
        )
        server = uvicorn.Server(config)
        sockets = [_reuse_port_socket(settings.host, settings.port)] if settings.reuse_port else None
        # On SIGTERM uvicorn stops accepting, finishes in-flight requests, runs
        # the lifespan shutdown (batch writer, spool drainer, scheduler), then
        # raises the signal again. With this no-op handler installed, that
        # re-raise does nothing: a requested stop ends with exit code 0.
        signal.signal(signal.SIGTERM, _stopped)
        log.info("callstore %s listening on http://%s:%s", role, settings.host, settings.port)
        try:
            await server.serve(sockets=sockets)
        finally:
            for sock in sockets or ():
                sock.close()
        if not server.started:
            raise RuntimeError("the server did not start; the reason is logged above")
        log.info("callstore %s stopped", role)


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do."""


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (the kernel spreads connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
