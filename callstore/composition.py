"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import Extensions
from receiver.metrics import Metrics
from store.jobs import Job
from store.settings import Settings
from sync.ledger import ledger_metrics
from sync.schedule import sync_jobs


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = []
    jobs.extend(sync_jobs(settings))
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics) -> Extensions:
    return Extensions(metrics_sources=[ledger_metrics])
