"""Wiring: which jobs, routes and receiver extensions each part contributes.

This is the only module that imports receiver/, sync/ and reports/ together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import Extensions
from receiver.calls_api import OPENAPI_PATHS as CALLS_PATHS
from receiver.calls_api import CallsAPI
from receiver.metrics import Metrics
from receiver.recordings_api import OPENAPI_PATHS as RECORDINGS_PATHS
from receiver.recordings_api import RecordingsAPI
from store.jobs import Job
from store.recording_store import LocalRecordingStore
from store.settings import Settings
from sync import recordings


def build_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = [
        Job("recordings", recordings.run_job, settings.recordings_interval_s,
            disabled_reason=recordings.media_disabled_reason(settings)),
    ]
    return jobs


def build_extensions(settings: Settings, engine: AsyncEngine, role: str, metrics: Metrics) -> Extensions:
    store = LocalRecordingStore(settings.recordings_dir)
    routes = [*CallsAPI(engine, settings).routes(), *RecordingsAPI(engine, store).routes()]
    return Extensions(routes=routes, openapi_paths={**CALLS_PATHS, **RECORDINGS_PATHS})
