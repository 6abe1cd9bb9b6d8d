"""Recordings that heal: the daily retention job (per-tenant days, the row
before the file), and the archive's figures on /metrics."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.recording_store import LocalRecordingStore
from store.recordings import check_file, purge, stored_recordings
from store.settings import Settings
from sync.fake import running_fake
from sync.recordings import FetchOptions, Fetcher
from tests.recording_fixtures import archive_settings, fake_state, load, with_recordings

FAST = FetchOptions(concurrency=4, rate=0, max_attempts=2, backoff=(0,))


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


class CrashOnDelete(LocalRecordingStore):
    """The process dies right after deleting the first file."""

    async def delete(self, key: str) -> bool:
        await super().delete(key)
        raise Crash


async def archived(engine: AsyncEngine, tmp_path: Path, n: int) -> tuple[Settings, list[str]]:
    """`n` recordings stored for tenant default; returns the settings and their call ids."""
    state = fake_state(calls=40)
    records = with_recordings(state)[:n]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, records)
        report = await Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run()
    assert report.counts == {"stored": n}
    return settings, [str(r["call_id"]) for r in records]


async def verify_problems(engine: AsyncEngine, store: LocalRecordingStore) -> list[str]:
    """What `callstore recordings verify` would flag."""
    async with engine.connect() as conn:
        return [f"{rec.call_id}: {problem}" async for rec in stored_recordings(conn)
                if (problem := await check_file(store, rec)) is not None]


async def test_the_daily_job_applies_each_tenants_retention(
        engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from callstore.composition import build_jobs

    settings, ids = await archived(engine, tmp_path, 5)
    old, recent, other_tenant = ids[:2], ids[2], ids[3:]
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.recordings SET call_started_at = now() - interval '400 days'"))
        await conn.execute(text("UPDATE callstore.recordings SET call_started_at = now() - interval '1 day' "
                                "WHERE call_id = :c"), {"c": recent})
        # Rows of a tenant that keeps its recordings forever.
        await conn.execute(text("UPDATE callstore.recordings SET tenant_id = 'acme' WHERE call_id = ANY(:ids)"),
                           {"ids": other_tenant})
    default, acme = settings.tenants
    assert acme.tenant_id == "acme" and acme.recordings_retention_days is None
    settings = replace(settings, tenants=(replace(default, recordings_retention_days=30), acme))

    job = next(j for j in build_jobs(settings) if j.name == "recordings-retention")
    assert job.disabled_reason is None and job.every_seconds == 24 * 3600
    with caplog.at_level(logging.INFO, logger="callstore.recordings"):
        assert await job.run(engine, settings) == {"default": 2}
    assert any("purged 2 recordings of tenant 'default' kept 30 days" in r.getMessage() for r in caplog.records)

    async with engine.connect() as conn:
        statuses = dict((await conn.execute(text("SELECT call_id, status FROM callstore.recordings"))).all())
    assert statuses == {**{c: "purged" for c in old}, recent: "stored", **{c: "stored" for c in other_tenant}}
    store = LocalRecordingStore(settings.recordings_dir)
    assert sorted(p.stem for p in settings.recordings_dir.rglob("*.mp3")) == sorted([recent, *other_tenant])
    assert await verify_problems(engine, store) == []

    # Unset everywhere: the job is off, and says why.
    off = next(j for j in build_jobs(replace(settings, tenants=(default, acme))) if j.name == "recordings-retention")
    assert "kept forever" in str(off.disabled_reason)


async def test_a_crash_between_the_row_and_the_file_leaves_nothing_verify_flags(
        engine: AsyncEngine, tmp_path: Path) -> None:
    settings, ids = await archived(engine, tmp_path, 3)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.recordings SET call_started_at = now() - interval '400 days'"))
    with pytest.raises(Crash):
        await purge(engine, CrashOnDelete(settings.recordings_dir), 30)
    store = LocalRecordingStore(settings.recordings_dir)
    # One file is gone and two are left; no stored row is without its file.
    assert len(list(settings.recordings_dir.rglob("*.mp3"))) == 2
    assert await verify_problems(engine, store) == []
    # The next purge deletes the files its predecessor left.
    assert (await purge(engine, store, 30)).count == 0
    assert list(settings.recordings_dir.rglob("*.mp3")) == []


async def test_metrics_show_the_archive(engine: AsyncEngine, receiver: str, tmp_path: Path) -> None:
    state = fake_state(calls=40)
    records = with_recordings(state)[:5]
    with running_fake(state) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/_fake/faults", json={"media": {str(records[0]["recording_url"]): "404",
                                                               str(records[1]["recording_url"]): "html200"}})
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, records)
        await Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run(tenant="default")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO callstore.recordings (tenant_id, call_id, created_at) "
                                    "VALUES ('acme', 'waiting', now() - interval '1 hour')"))
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{receiver}/metrics")).text
    # Valid exposition text, as Prometheus parses it.
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {"callstore_recordings", "callstore_recording_downloads"} <= families
    lines = body.splitlines()
    for line in [
        'callstore_recordings{tenant="default",status="stored"} 3',
        'callstore_recordings{tenant="default",status="expired"} 1',
        'callstore_recordings{tenant="default",status="failed"} 1',
        'callstore_recordings{tenant="acme",status="pending"} 1',
        'callstore_recording_downloads_total{tenant="default",outcome="stored"} 3',
        'callstore_recording_downloads_total{tenant="default",outcome="expired"} 1',
        'callstore_recording_downloads_total{tenant="default",outcome="retry"} 1',
        'callstore_recording_downloads_total{tenant="default",outcome="failed"} 1',
    ]:
        assert line in lines, (line, [x for x in lines if "recording" in x])
    [oldest] = [x for x in lines if x.startswith('callstore_recordings_oldest_pending_age_seconds{tenant="acme"}')]
    assert 3500 < float(oldest.rsplit(" ", 1)[1]) < 36000
    assert not any(x.startswith('callstore_recordings_oldest_pending_age_seconds{tenant="default"}') for x in lines)
