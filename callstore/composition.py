"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import Extensions
from receiver.metrics import Metrics
from reports.alerts.job import alerts_job
from reports.alerts.metrics import alert_metrics
from store.jobs import Job
from store.settings import Settings


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = [alerts_job(settings)]
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics) -> Extensions:
    return Extensions(metrics_sources=[alert_metrics])
