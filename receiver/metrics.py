"""Prometheus metrics of one process (a registry per app, so tests stay apart)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from receiver.errors import error
from store.replica import ReadRouting

log = logging.getLogger("callstore.metrics")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.webhook_requests = Counter(
            "callstore_webhook_requests", "Webhook deliveries by HTTP status", ["status"], registry=r
        )
        self.webhook_latency = Histogram(
            "callstore_webhook_latency_seconds", "Time from request to acknowledgement",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r,
        )
        self.ingested = Counter("callstore_events_ingested", "Events committed, by source", ["source"], registry=r)
        self.duplicates = Counter("callstore_events_duplicate", "Deliveries of an already stored payload", registry=r)
        self.batch_size = Histogram(
            "callstore_ingest_batch_size", "Events per committed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r,
        )
        self.dead_letters = Counter("callstore_dead_letters", "Rejected deliveries kept", ["reason"], registry=r)
        self.spool_depth = Gauge("callstore_spool_depth", "Events waiting in the local spool", registry=r)
        self.spool_oldest = Gauge("callstore_spool_oldest_age_seconds", "Age of the oldest spooled event", registry=r)
        self.job_runs = Counter("callstore_job_runs", "Scheduled job runs", ["job", "outcome"], registry=r)

    def watch_replica(self, reads: ReadRouting) -> None:
        """Gauges of the read replica (only when one is configured)."""
        Gauge("callstore_replica_in_use", "1 while reads go to the read replica, 0 while they go to the primary",
              registry=self.registry).set_function(lambda: 1.0 if reads.in_use else 0.0)
        Gauge("callstore_replica_lag_seconds", "How far the read replica's data may be behind the primary "
              "(NaN until measured)", registry=self.registry).set_function(reads.lag_metric)

    def endpoint_with(
        self, engine: AsyncEngine, sources: Sequence[Callable[[AsyncEngine], Awaitable[str]]],
        token: str | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """The /metrics endpoint: this process's registry plus `sources` (shared state in Postgres).
        With `token` (CALLSTORE_METRICS_TOKEN), only `Authorization: Bearer <token>` may read it."""
        expected = f"Bearer {token}".encode() if token else None

        async def endpoint(request: Request) -> Response:
            if expected is not None:
                given = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(given, expected):
                    return error(401, "send Authorization: Bearer <the metrics token>",
                                 headers={"WWW-Authenticate": "Bearer"})
            parts = [generate_latest(self.registry).decode()]
            for source in sources:
                try:
                    parts.append(await source(engine))
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database did
                    log.warning("a metrics source failed: %s", type(exc).__name__)
            return Response("".join(p if p.endswith("\n") or not p else p + "\n" for p in parts),
                            media_type=CONTENT_TYPE_LATEST)

        return endpoint
