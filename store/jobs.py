"""Scheduled jobs: what a job is, and the lease that makes N replicas run it once.

A replica runs a job only while it holds the job's row in callstore.job_leases:
taken when free or expired, renewed while the job runs, given back when it
ends. A holder that crashes or loses the database holds it at most
LEASE_SECONDS. Only the service may write that table, so no other role (the
read-only BI role included) can keep a job from running; advisory locks,
which any role can take, are not used. The scheduler itself (APScheduler)
lives in the command line, which collects the jobs of every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.settings import Settings

log = logging.getLogger("callstore.jobs")

#: How long a lease lasts without renewal; renewed every third of it.
LEASE_SECONDS = 60
#: The shortest lease, for jobs that run every few seconds (the rollups).
MIN_LEASE_SECONDS = 10


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


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str


# Takes the row when it is free or expired; a live holder's row is left alone.
_ACQUIRE = text(
    """
    INSERT INTO callstore.job_leases AS l (name, holder, acquired_at, expires_at)
    VALUES (:name, :holder, now(), now() + make_interval(secs => :seconds))
    ON CONFLICT (name) DO UPDATE
        SET holder = excluded.holder, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
        WHERE l.expires_at <= now()
    RETURNING l.holder
    """
)
_RENEW = text(
    """
    UPDATE callstore.job_leases SET expires_at = now() + make_interval(secs => :seconds)
    WHERE name = :name AND holder = :holder
    RETURNING name
    """
)
_RELEASE = text("UPDATE callstore.job_leases SET expires_at = '-infinity' WHERE name = :name AND holder = :holder")


def lease_seconds(every_seconds: int) -> float:
    """A job's lease: two of its intervals, within [MIN_LEASE_SECONDS, LEASE_SECONDS].

    A process that dies holds its leases until they expire; a short lease for a
    frequent job keeps that gap near its interval (rollups reflect a committed
    change within seconds even after a scheduler is killed).
    """
    return float(min(LEASE_SECONDS, max(MIN_LEASE_SECONDS, 2 * every_seconds)))


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def job_lock(engine: AsyncEngine, name: str, *, seconds: float = LEASE_SECONDS) -> AsyncIterator[Lease | None]:
    """Hold the job's lease for the duration of the block.

    Yields the lease, or None when another process holds it (skip this run).
    """
    lease = Lease(name, _holder())
    params = {"name": name, "holder": lease.holder, "seconds": seconds}
    async with engine.begin() as conn:
        got = await conn.scalar(_ACQUIRE, params)
    if got != lease.holder:
        yield None
        return
    keeper = asyncio.create_task(_renew(engine, params, seconds / 3), name=f"lease-{name}")
    try:
        yield lease
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        with contextlib.suppress(Exception):  # unreachable database: the lease expires by itself
            async with engine.begin() as conn:
                await conn.execute(_RELEASE, params)


async def _renew(engine: AsyncEngine, params: dict[str, object], every: float) -> None:
    failing = False
    while True:
        await asyncio.sleep(every)
        try:
            async with engine.begin() as conn:
                kept = await conn.scalar(_RENEW, params)
        except Exception as exc:  # noqa: BLE001 - keep trying until the job ends
            if not failing:
                log.warning("job %s: its lease could not be renewed (%s); retrying", params["name"],
                            type(exc).__name__)
            failing = True
            continue
        failing = False
        if kept is None:
            # Expired while the database was unreachable, and taken by another
            # replica: this run finishes (jobs are safe to overlap), never renews again.
            log.warning("job %s: its lease expired and was taken by another process; this run finishes "
                        "without it", params["name"])
            return
