"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from console.pages import Console
from receiver.app import Extensions
from receiver.audit import OPENAPI_PATHS as AUDIT_PATHS
from receiver.audit import AuditAPI, RefusalAudit
from receiver.calls_api import OPENAPI_PATHS as CALLS_PATHS
from receiver.calls_api import CallsAPI
from receiver.drain import Drainer
from receiver.metrics import Metrics
from receiver.recordings_api import OPENAPI_PATHS as RECORDINGS_PATHS
from receiver.recordings_api import RecordingsAPI
from receiver.reports_api import OPENAPI_PATHS as REPORTS_OPENAPI
from receiver.reports_api import report_routes
from receiver.spool import Spool
from reports.agent_report import agent_report
from reports.agent_rollups import agent_refresh_job
from reports.alerts.job import alerts_job
from reports import campaigns as campaign_rollups
from reports.alerts.metrics import alert_metrics
from reports.campaign_report import campaign_report
from reports.queries import queue_report
from reports.rollups import refresh_job
from store import raw_partitions
from store.jobs import Job
from store.recording_store import LocalRecordingStore
from store.recordings import archive_metrics, retention_disabled_reason, retention_job
from store.replica import ReadRouting
from store.settings import Settings
from store.tenant_runs import tenant_metrics
from sync import recordings
from sync.ledger import ledger_metrics
from sync.schedule import sync_jobs

#: Rollups reflect a committed change within 10 seconds.
ROLLUP_REFRESH_SECONDS = 5
#: Recording retention counts in days: once a day is enough.
RETENTION_EVERY_S = 24 * 3600


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = [
        alerts_job(settings),
        Job("rollups", refresh_job, every_seconds=ROLLUP_REFRESH_SECONDS),
        Job("agent-rollups", agent_refresh_job, every_seconds=ROLLUP_REFRESH_SECONDS),
        Job("campaign-rollups", campaign_rollups.refresh_job, every_seconds=ROLLUP_REFRESH_SECONDS),
        Job("recordings", recordings.run_job, settings.recordings_interval_s,
            disabled_reason=recordings.media_disabled_reason(settings)),
        Job("recordings-retention", retention_job, RETENTION_EVERY_S,
            disabled_reason=retention_disabled_reason(settings)),
        # Monthly raw-event partitions ahead, rows out of DEFAULT partitions, raw-event retention.
        Job("raw-partitions", raw_partitions.run_job, raw_partitions.EVERY_SECONDS),
    ]
    jobs.extend(sync_jobs(settings))
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics, *,
                     spool: bool = True, reads: ReadRouting | None = None) -> Extensions:
    """What `serve --role ROLE` plugs into the receiver app.

    Receivers (roles all and receiver) serve the webhook and every /api route,
    with the durable spool unless `spool` is False (tests of other parts).
    A scheduler serves only /healthz, /readyz and /metrics: it has no spool,
    so it must not take webhooks (it answers 404 to them).

    `reads` sends the read-only routes (/api GETs, reports, console pages) to
    the read replica while it is healthy; everything that writes, or must read
    what it has just written (webhook, tokens, console login and sessions,
    the recording download and its audit, alert rules), uses `engine`.
    """
    if role == "scheduler":
        return Extensions(metrics_sources=[alert_metrics, ledger_metrics, archive_metrics, tenant_metrics],
                          webhook=False)
    reads = reads or ReadRouting(engine)

    async def queues(params: Mapping[str, str]) -> tuple[str, bytes]:
        return await reads.read(lambda e: queue_report(e, settings, params, formats=("json", "csv", "xlsx")))

    async def agents(params: Mapping[str, str]) -> tuple[str, bytes]:
        return await reads.read(lambda e: agent_report(e, settings, params, formats=("json", "csv", "xlsx")))

    async def campaigns(params: Mapping[str, str]) -> tuple[str, bytes]:
        return await reads.read(lambda e: campaign_report(e, settings, params, formats=("json", "csv")))

    store = LocalRecordingStore(settings.recordings_dir)
    audit = RefusalAudit(engine, [t.tenant_id for t in settings.tenants])
    # The download reads the recording's state on the primary: a file stored a
    # moment ago is served, never refused (and audited as refused) by a lagging replica.
    recordings_api = RecordingsAPI(engine, store, audit)
    ext = Extensions(
        routes=[*report_routes(queues, agents, campaigns), *CallsAPI(reads, settings).routes(),
                *recordings_api.routes(), *AuditAPI(reads, settings).routes(),
                *Console(settings, engine, recordings_api, reads).routes()],
        openapi_paths={**REPORTS_OPENAPI, **CALLS_PATHS, **RECORDINGS_PATHS, **AUDIT_PATHS},
        metrics_sources=[alert_metrics, ledger_metrics, archive_metrics, tenant_metrics],
        on_refused=audit.middleware_refused,
        reads=reads,
    )
    if reads.configured:
        ext.lifespans = [*ext.lifespans, reads.running]
    if spool:
        ext = spool_extensions(ext, settings, engine, metrics)
    return ext


def spool_extensions(ext: Extensions, settings: Settings, engine: AsyncEngine, metrics: Metrics) -> Extensions:
    """The durable spool: the batch writer's fallback, its drainer, its status."""
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    drainer = Drainer(spool, engine, {t.tenant_id: t for t in settings.tenants})
    metrics.spool_depth.set_function(lambda: spool.depth)
    metrics.spool_oldest.set_function(spool.oldest_age)
    ext.fallback = spool.append
    ext.spool_status = spool.status
    ext.lifespans = [*ext.lifespans, drainer.running]
    return ext
