"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import Extensions
from receiver.metrics import Metrics
from receiver.reports_api import OPENAPI_PATHS as REPORTS_OPENAPI
from receiver.reports_api import report_routes
from reports.queries import queue_report
from reports.rollups import refresh_job
from store.jobs import Job
from store.settings import Settings

#: SPEC 6: rollups reflect a committed change within 10 seconds.
ROLLUP_REFRESH_SECONDS = 5


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = [Job("rollups", refresh_job, every_seconds=ROLLUP_REFRESH_SECONDS)]
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics) -> Extensions:
    async def queues(params: Mapping[str, str]) -> tuple[str, bytes]:
        return await queue_report(engine, settings, params, formats=("json", "csv"))

    return Extensions(routes=report_routes(queues), openapi_paths=REPORTS_OPENAPI)
