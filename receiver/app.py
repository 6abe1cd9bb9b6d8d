"""The Starlette application: webhook, health, metrics, and the `/api` routes
that other parts contribute (the command line composes them)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from receiver.auth import Forbidden, NotVisible, OnRefused, TokenAuth
from receiver.batcher import BatchWriter, Fallback
from receiver.errors import error, http_exception, unhandled
from receiver.health import Readiness, healthz
from receiver.metrics import Metrics
from receiver.openapi import OpenAPI
from receiver.params import BadParameter
from receiver.request_id import HEADER, RequestId, headers_too_large, identify
from receiver.webhook import KeyRing, Webhook
from store.ingest import IngestResult
from store.migrate import head_revisions
from store.replica import ReadRouting
from store.settings import Settings

log = logging.getLogger("callstore.receiver")
WEBHOOK_PATH = "/webhooks/alohub"


@dataclass
class Extensions:
    """What other parts plug into the receiver (given by the command line)."""

    routes: Sequence[BaseRoute] = ()
    #: OpenAPI path items of `routes`, merged into /openapi.json.
    openapi_paths: Mapping[str, Any] = field(default_factory=dict)
    #: Extra /metrics text (Prometheus exposition lines), read at scrape time,
    #: e.g. from tables that every replica shares.
    metrics_sources: Sequence[Callable[[AsyncEngine], Awaitable[str]]] = ()
    fallback: Fallback | None = None
    spool_status: Callable[[], dict[str, float]] | None = None
    #: Async context managers entered for the app's lifetime (spool drainer, scheduler...).
    lifespans: Sequence[Callable[[], contextlib.AbstractAsyncContextManager[None]]] = field(default_factory=list)
    #: Serve `POST /webhooks/alohub` (not in a scheduler-only process).
    webhook: bool = True
    #: Told of every request that the token check refuses (the recording audit).
    on_refused: OnRefused | None = None
    #: Where the routes' reads go (primary or read replica): /readyz and /metrics report it.
    reads: ReadRouting | None = None


def create_app(settings: Settings, engine: AsyncEngine, ext: Extensions | None = None,
               metrics: Metrics | None = None) -> "WebhookFastPath":
    ext = ext or Extensions()
    metrics = metrics or Metrics()
    if ext.reads is not None and ext.reads.configured:
        metrics.watch_replica(ext.reads)
    tenants = {t.tenant_id: t for t in settings.tenants}

    def on_commit(items: Sequence[object], result: IngestResult, seconds: float) -> None:
        metrics.batch_size.observe(len(items))
        metrics.duplicates.inc(result.duplicates)
        metrics.ingested.labels("webhook").inc(result.deliveries)

    writer = BatchWriter(engine, tenants, batch_max=settings.batch_max, fallback=ext.fallback, on_commit=on_commit)
    webhook = Webhook(KeyRing(settings.tenants), writer, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        async with contextlib.AsyncExitStack() as stack:
            for cm in ext.lifespans:
                await stack.enter_async_context(cm())
            try:
                yield
            finally:
                await writer.stop()

    async def forbidden(request: Request, exc: Exception) -> Response:
        return error(403, str(exc))

    async def not_visible(request: Request, exc: Exception) -> Response:
        return error(404, str(exc))

    async def bad_parameter(request: Request, exc: Exception) -> Response:
        return error(400, str(exc))

    routes: list[BaseRoute] = [
        # Reached only for errors (wrong method): see WebhookFastPath.
        *([Route(WEBHOOK_PATH, webhook.endpoint, methods=["POST"])] if ext.webhook else []),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", Readiness(engine, head_revisions(), ext.spool_status, ext.reads).endpoint, methods=["GET"]),
        Route("/metrics", metrics.endpoint_with(engine, ext.metrics_sources, settings.metrics_token), methods=["GET"]),
        Route("/openapi.json", OpenAPI(ext.openapi_paths, webhook=ext.webhook).endpoint, methods=["GET"]),
        *ext.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestId), Middleware(TokenAuth, engine=engine, on_refused=ext.on_refused)],
        exception_handlers={HTTPException: http_exception, Forbidden: forbidden, NotVisible: not_visible,
                            BadParameter: bad_parameter, Exception: unhandled},
        lifespan=lifespan,
    )
    app.state.writer = writer
    app.state.metrics = metrics
    app.state.engine = engine
    #: The configured tenants, for the tenant scope of /api requests (receiver/auth.py).
    app.state.tenant_ids = tuple(tenants)
    return WebhookFastPath(app, webhook if ext.webhook else None)


class WebhookFastPath:
    """`POST /webhooks/alohub` is the hot path: it goes straight to its handler,
    past the routing, token and exception layers that the other routes need
    (together they cost about 40 % of the CPU per event). It keeps what every
    route has: the request id, the header size limit, JSON errors.
    Everything else, lifespan included, goes to the Starlette app."""

    def __init__(self, app: Starlette, webhook: Webhook | None) -> None:
        self.app = app
        self.webhook = webhook
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.webhook is None or scope["type"] != "http" or scope["path"] != WEBHOOK_PATH
                or scope["method"] != "POST"):
            await self.app(scope, receive, send)
            return
        rid, too_large = identify(scope)
        if too_large:
            await headers_too_large(send, rid)
            return
        try:
            response = await self.webhook.endpoint(Request(scope, receive))
        except Exception:
            log.exception("the webhook failed")
            response = error(500, "internal error; the request id is in the server log")
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [*response.raw_headers, (HEADER, rid)]})
        await send({"type": "http.response.body", "body": response.body})
