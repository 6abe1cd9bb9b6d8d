"""Scheduled jobs: what a job is, and the advisory lock that makes N replicas
run it once. The scheduler itself (APScheduler) lives in the
command line, which collects the jobs of every part."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.settings import Settings

#: First key of the two-key advisory locks used for jobs (the one-key space is
#: used for per-call locks by the ingest path; the two spaces never collide).
JOB_LOCK_SPACE = 0x6A6F62  # "job"


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[AsyncEngine, Settings], Awaitable[object]]
    every_seconds: int
    #: Why the job cannot run with these settings (None: it can).
    disabled_reason: str | None = None
    #: What an operator should know about how it runs with these settings,
    #: said once at start (e.g. alerts evaluated but nobody notified).
    notice: str | None = None


def job_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


@contextlib.asynccontextmanager
async def job_lock(engine: AsyncEngine, name: str) -> AsyncIterator[AsyncConnection | None]:
    """Hold the job's session-level advisory lock on a dedicated connection.

    Yields that connection, or None when another process holds the lock. A
    crashed holder's lock goes with its connection, so a job is never stuck.
    """
    async with engine.connect() as conn:
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": JOB_LOCK_SPACE, "b": job_key(name)})
        await conn.commit()
        if not got:
            yield None
            return
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": JOB_LOCK_SPACE, "b": job_key(name)})
                await conn.commit()
