"""`callstore serve` and `callstore migrate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn

from callstore.composition import build_extensions, build_jobs
from callstore.runtime import database
from callstore.scheduler import Scheduler
from receiver.app import create_app
from receiver.metrics import Metrics
from store import migrate
from store.settings import Settings

log = logging.getLogger("callstore.serve")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the receiver and the scheduler")
    p.add_argument("--role", choices=("all", "receiver", "scheduler"), default="all",
                   help="all (default), receiver (webhook and API only) or scheduler (jobs only)")
    p.set_defaults(func=_serve)
    m = sub.add_parser("migrate", help="apply database migrations")
    m.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> None:
        async with database(settings) as engine:
            print(f"database at revision {', '.join(sorted(await migrate.current_revisions(engine)))}")

    asyncio.run(go())
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(serve(settings, args.role))
    return 0


async def serve(settings: Settings, role: str) -> None:
    async with database(settings, pool_size=20) as engine:
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
            lifespan="on", timeout_graceful_shutdown=20, server_header=False,
        )
        server = uvicorn.Server(config)
        log.info("callstore %s listening on http://%s:%s", role, settings.host, settings.port)
        await server.serve()
