"""Job leases: one holder at a time, renewed while the job runs, taken over once expired."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.jobs import job_lock, lease_seconds


async def test_one_holder_then_the_next(engine: AsyncEngine) -> None:
    async with job_lock(engine, "rollups") as held:
        assert held is not None
        async with job_lock(engine, "rollups") as second:
            assert second is None  # another replica skips this run
        async with job_lock(engine, "alerts") as other:
            assert other is not None  # leases are per job
    async with job_lock(engine, "rollups") as again:
        assert again is not None  # released at the end of the run


async def test_a_running_job_keeps_its_lease_past_its_duration(engine: AsyncEngine) -> None:
    async with job_lock(engine, "backfill", seconds=3) as held:
        assert held is not None
        await asyncio.sleep(4)  # longer than the lease: renewed meanwhile (every second)
        async with job_lock(engine, "backfill", seconds=3) as second:
            assert second is None


async def test_an_expired_lease_is_taken_over_and_its_old_holder_told(engine: AsyncEngine,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "callstore.jobs")
    old = job_lock(engine, "recordings", seconds=3)
    held = await old.__aenter__()
    assert held is not None
    # As if this holder had lost the database for longer than its lease.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.job_leases SET expires_at = now() - interval '1 second'"))
    new = job_lock(engine, "recordings", seconds=60)
    taker = await new.__aenter__()
    assert taker is not None and taker.holder != held.holder
    await asyncio.sleep(1.5)  # the old holder's next renewal finds the lease gone
    assert "lease expired and was taken by another process" in caplog.text
    await old.__aexit__(None, None, None)
    async with job_lock(engine, "recordings") as third:
        assert third is None  # the old holder's end did not free the new holder's lease
    await new.__aexit__(None, None, None)


def test_frequent_jobs_get_short_leases() -> None:
    assert lease_seconds(5) == 10  # the rollups: back within seconds after a killed scheduler
    assert lease_seconds(60) == 60 and lease_seconds(24 * 3600) == 60
