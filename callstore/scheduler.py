"""APScheduler 3.11 running the jobs of every part, each under its lease (store/jobs.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import is_unavailable
from store.jobs import Job, job_lock, lease_seconds
from store.settings import Settings
from store.tenant_runs import TenantsFailed

log = logging.getLogger("callstore.scheduler")


class Scheduler:
    def __init__(self, engine: AsyncEngine, settings: Settings, jobs: Sequence[Job],
                 on_run: Callable[[str, str], None] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = [j for j in jobs if j.disabled_reason is None]
        self.off = [j for j in jobs if j.disabled_reason is not None]
        self.on_run = on_run
        self._scheduler = AsyncIOScheduler(timezone="UTC")

    def start(self) -> None:
        for job in self.off:
            log.warning("job %s is off: %s", job.name, job.disabled_reason)
        for job in self.jobs:
            if job.notice:
                log.warning("job %s: %s", job.name, job.notice)
            self._scheduler.add_job(
                self._run, IntervalTrigger(seconds=job.every_seconds), args=[job], id=job.name, name=job.name,
                coalesce=True, max_instances=1, misfire_grace_time=job.every_seconds,
                next_run_time=None,
            )
            # First run soon after start, then on the interval.
            self._scheduler.modify_job(job.name, next_run_time=_soon())
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _SaidInWords) for f in logger.filters):
                logger.addFilter(_SaidInWords())
        self._scheduler.add_listener(_in_words, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def _run(self, job: Job) -> None:
        outcome = "ok"
        try:
            async with job_lock(self.engine, job.name, seconds=lease_seconds(job.every_seconds)) as held:
                if held is None:
                    outcome = "skipped_locked"
                    return
                await job.run(self.engine, self.settings)
        except Exception as exc:
            outcome = "failed"
            if isinstance(exc, TenantsFailed):  # each tenant's error is logged already, naming it
                log.warning("job %s: %s", job.name, exc)
            elif is_unavailable(exc):  # an outage: one line, not a traceback every few seconds
                log.warning("job %s skipped: the database cannot be reached (%s)", job.name, type(exc).__name__)
            else:
                log.exception("job %s failed", job.name)
        finally:
            if self.on_run is not None:
                self.on_run(job.name, outcome)


def _in_words(event: JobEvent) -> None:
    """APScheduler's skipped and missed runs, as sentences naming the job."""
    if event.code == EVENT_JOB_MAX_INSTANCES:
        log.warning("Job %s skipped a run: its previous run is still going.", event.job_id)
    else:
        when = getattr(event, "scheduled_run_time", None)
        log.warning("Job %s missed its run due at %s (the process was busy or paused); it runs again at its next "
                    "interval.", event.job_id, when.isoformat(timespec="seconds") if when else "an earlier time")


class _SaidInWords(logging.Filter):
    """Drops APScheduler's own lines for the events `_in_words` reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Execution of job", "Run time of job"))


def _soon():  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(seconds=2)
