"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import Extensions
from receiver.drain import Drainer
from receiver.metrics import Metrics
from receiver.spool import Spool
from reports.alerts.job import alerts_job
from reports.alerts.metrics import alert_metrics
from store.jobs import Job
from store.settings import Settings
from sync.ledger import ledger_metrics
from sync.schedule import sync_jobs


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = [alerts_job(settings)]
    jobs.extend(sync_jobs(settings))
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics) -> Extensions:
    ext = Extensions(metrics_sources=[alert_metrics, ledger_metrics])
    if role in ("all", "receiver"):
        ext = spool_extensions(ext, settings, engine, metrics)
    return ext


def spool_extensions(ext: Extensions, settings: Settings, engine: AsyncEngine, metrics: Metrics) -> Extensions:
    """The durable spool of SPEC 5.4: the batch writer's fallback, its drainer, its status."""
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    drainer = Drainer(spool, engine, {t.tenant_id: t for t in settings.tenants})
    metrics.spool_depth.set_function(lambda: spool.depth)
    metrics.spool_oldest.set_function(spool.oldest_age)
    ext.fallback = spool.append
    ext.spool_status = spool.status
    ext.lifespans = [*ext.lifespans, drainer.running]
    return ext
