"""The scheduled jobs of sync/: the backfill, the queue catalogue and the campaigns.

Each runs under the scheduler's job lease (N replicas, one run), and inside
a run each tenant is its own task (store/tenant_runs.py): one tenant's slow
or failing Alohub never delays another's. The rate limits are process-wide
state shared by the jobs' clients, kept per tenant; each run opens an HTTP
client for its own duration (a run every 10 minutes does not need a
connection kept open in between).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncEngine

from store.jobs import Job
from store.settings import Settings
from store.tenant_runs import TENANT_RUNS, TenantRuns, TenantsFailed, run_per_tenant
from sync import campaigns
from sync.backfill import run_scheduled, tenants_with_history
from sync.client import AlohubClient, new_http_client
from sync.queues import fetch_queues, store_catalogue
from sync.ratelimit import RateLimits

log = logging.getLogger("callstore.sync.schedule")

QUEUES_EVERY_S = 24 * 3600


def sync_jobs(settings: Settings, limits: RateLimits | None = None,
              clock: Callable[[], datetime] | None = None) -> list[Job]:
    """The jobs; `clock` (the end of each backfill window, default now) is for tests."""
    limits = limits or RateLimits(observe=TENANT_RUNS.request)

    async def backfill_job(engine: AsyncEngine, settings: Settings) -> object:
        return await run_scheduled(engine, settings, limits=limits, now=clock() if clock else None)

    async def queues_job(engine: AsyncEngine, settings: Settings) -> object:
        return await sync_all_queues(engine, settings, limits)

    async def campaigns_job(engine: AsyncEngine, settings: Settings) -> object:
        out = await campaigns.sync_all(engine, settings, limits)
        missing = [(t.tenant_id, "logged above") for t in settings.tenants if t.api_key and t.tenant_id not in out]
        if missing:
            raise TenantsFailed("sync-campaigns", missing)
        return out

    ready, reasons = tenants_with_history(settings)
    backfill_off = None if ready else "no tenant can reach the call history: " + "; ".join(reasons)
    queue_tenants = [t for t in settings.tenants if t.api_key]
    queues_off = None if queue_tenants else "no tenant has ALOHUB_API_KEY set (the queue list is on the gateway)"
    return [
        Job("backfill", backfill_job, settings.backfill_interval_s, backfill_off),
        Job("sync-queues", queues_job, QUEUES_EVERY_S, queues_off),
        Job("sync-campaigns", campaigns_job, settings.campaigns_interval_s,
            queues_off and "no tenant has ALOHUB_API_KEY set (the campaign API is on the gateway)"),
    ]


async def sync_all_queues(engine: AsyncEngine, settings: Settings, limits: RateLimits,
                          runs: TenantRuns | None = None) -> dict[str, object]:
    """The queue catalogue of every tenant with an API key, each tenant its own task."""
    tenants = {t.tenant_id: t for t in settings.tenants if t.api_key}
    async with new_http_client() as http:

        async def one(tenant_id: str) -> object:
            tenant = tenants[tenant_id]
            records = await fetch_queues(AlohubClient(http, tenant, limits=limits))
            async with engine.begin() as conn:
                return await store_catalogue(conn, tenant, records, datetime.now(timezone.utc))

        results = await run_per_tenant("sync-queues", list(tenants), one, concurrency=settings.tenant_concurrency,
                                       budget_s=settings.tenant_run_budget_s, runs=runs,
                                       describe=lambda _, change: f"queue catalogue: {change.summary()}")
    failed = [(r.tenant_id, r.error or r.outcome) for r in results if r.outcome != "ok"]
    if failed:
        raise TenantsFailed("sync-queues", failed)
    return {r.tenant_id: r.result for r in results}
