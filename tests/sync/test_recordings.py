"""The recording downloader against the fake Alohub over real HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.recording_store import LocalRecordingStore
from sync.fake import recording_bytes, recording_link, running_fake
from sync.media import resolve_url
from sync.recordings import FetchOptions, Fetcher
from tests.recording_fixtures import archive_settings, fake_state, load, with_recordings

FAST = FetchOptions(concurrency=4, rate=0, max_attempts=3, backoff=(0,))


async def rows(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM analytics.recordings"))
        return {r.call_id: dict(r._mapping) for r in result}


def path_of(record: dict[str, object]) -> str:
    return str(record["recording_url"])


async def test_stores_every_recording_byte_for_byte(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=40)
    records = with_recordings(state)
    assert len(records) >= 8
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        # Half arrive as webhook events (full MP3Export URL), half from history (bare path).
        webhook = [{**r, "recording_url": recording_link(base, path_of(r))} for r in records[::2]]
        await load(engine, settings, webhook, source="webhook")
        await load(engine, settings, records[1::2])
        store = LocalRecordingStore(settings.recordings_dir)
        report = await Fetcher(engine, settings, store, FAST).run()
        async with httpx.AsyncClient(base_url=base) as client:
            truth = {r["call_id"]: (await client.get("/_fake/media-sha256", params={"url": path_of(r)})).json()
                     for r in records}

    assert report.counts == {"stored": len(records)}
    got = await rows(engine)
    assert set(got) == {r["call_id"] for r in records}
    for r in records:
        row = got[r["call_id"]]
        assert row["status"] == "stored" and row["attempts"] == 1 and row["last_error"] is None
        data = store.path(str(row["storage_key"])).read_bytes()
        assert data == recording_bytes(path_of(r), state.media_size)
        assert row["sha256"] == hashlib.sha256(data).hexdigest() == truth[r["call_id"]]["sha256"]
        assert row["size"] == len(data) == truth[r["call_id"]]["size"]
        # Layout: tenant / local call date / call id; nothing from the URL.
        assert row["storage_key"] == f"default/{r['starttime'][:10].replace('-', '/')}/{r['call_id']}.mp3"
    async with engine.connect() as conn:
        statuses = dict((await conn.execute(text(
            "SELECT call_id, recording_status FROM analytics.calls WHERE recording_status <> 'none'"))).all())
    assert statuses == {r["call_id"]: "stored" for r in records}
    assert not any(settings.recordings_dir.joinpath(".partial").iterdir())

    # A second run finds nothing to do.
    again = await Fetcher(engine, settings, store, FAST).run()
    assert again.attempted == 0 and again.enqueued == 0


async def test_faults_end_in_the_right_state(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=40)
    records = with_recordings(state)[:7]
    faults = ["html200", "json200", "truncated", "404", "500_then_ok", "redirect_foreign", "redirect_same"]
    by_fault = {f: r["call_id"] for f, r in zip(faults, records)}
    with running_fake(state) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            media = {path_of(r): f for f, r in zip(faults, records)}
            assert (await client.post("/_fake/faults", json={"media": media})).status_code == 200
            settings = archive_settings(base, tmp_path)
            await load(engine, settings, records)
            store = LocalRecordingStore(settings.recordings_dir)
            report = await Fetcher(engine, settings, store, FAST).run()
            stats = (await client.get("/_fake/stats")).json()

    got = {f: (await rows(engine))[cid] for f, cid in by_fault.items()}
    for fault in ("html200", "json200", "truncated"):
        assert got[fault]["status"] == "failed" and got[fault]["attempts"] == 3, fault
        assert got[fault]["sha256"] is None and got[fault]["storage_key"] is None
    assert "not audio" in str(got["html200"]["last_error"]) and "text/html" in str(got["html200"]["last_error"])
    assert "application/json" in str(got["json200"]["last_error"])
    assert "received 32768 bytes, expected 65536" in str(got["truncated"]["last_error"])
    assert got["404"]["status"] == "expired" and got["404"]["attempts"] == 1
    assert got["500_then_ok"]["status"] == "stored" and got["500_then_ok"]["attempts"] == 3
    assert got["redirect_foreign"]["status"] == "failed" and got["redirect_foreign"]["attempts"] == 1
    assert got["redirect_foreign"]["last_error"] == "refused: not a configured media origin"
    assert got["redirect_same"]["status"] == "stored"
    for fault in ("500_then_ok", "redirect_same"):
        key = str(got[fault]["storage_key"])
        record = records[faults.index(fault)]
        assert store.path(key).read_bytes() == recording_bytes(path_of(record), state.media_size)
    # Only the stored ones left files; no partial file stays behind.
    files = [p for p in settings.recordings_dir.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(f"{by_fault[f]}.mp3" for f in ("500_then_ok", "redirect_same"))
    assert report.counts == {"stored": 2, "expired": 1, "failed": 4, "retry": 2 * 3 + 2}
    assert stats["media_by_path"][path_of(records[faults.index("404")])] == 1


async def test_backoff_keeps_a_failed_download_pending(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=20)
    record = with_recordings(state)[0]
    with running_fake(state) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/_fake/faults", json={"media": {path_of(record): "500_then_ok:1"}})
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, [record])
        store = LocalRecordingStore(settings.recordings_dir)
        options = FetchOptions(rate=0, max_attempts=5)  # default backoff: 1 minute first
        first = await Fetcher(engine, settings, store, options).run()
        row = (await rows(engine))[record["call_id"]]
        assert first.counts == {"retry": 1}
        assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"] == "HTTP 500"
        async with engine.connect() as conn:
            wait = await conn.scalar(text("SELECT extract(epoch FROM next_attempt_at - now()) FROM callstore.recordings"))
        assert 50 < float(wait) < 70
        # Not due yet: nothing happens; once due, it is stored.
        assert (await Fetcher(engine, settings, store, options).run()).attempted == 0
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.recordings SET next_attempt_at = now()"))
        assert (await Fetcher(engine, settings, store, options).run()).counts == {"stored": 1}


async def test_only_allowed_hosts_are_fetched(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=20)
    record = with_recordings(state)[0]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        port = base.rsplit(":", 1)[1]
        # Same server, but named by a host the tenant does not allow.
        foreign = {**record, "call_id": "x1", "recording_url": f"http://localhost:{port}/IPCCMedia/MP3Export.do?url={path_of(record)}&source=ipcc"}
        odd_scheme = {**record, "call_id": "x2", "recording_url": "file:///etc/passwd"}
        await load(engine, settings, [foreign, odd_scheme], source="webhook")
        store = LocalRecordingStore(settings.recordings_dir)
        report = await Fetcher(engine, settings, store, FAST).run()
        async with httpx.AsyncClient(base_url=base) as client:
            stats = (await client.get("/_fake/stats")).json()
    got = await rows(engine)
    assert report.counts == {"failed": 2}
    assert got["x1"]["last_error"] == "refused: not a configured media origin"
    assert got["x2"]["status"] == "failed"
    assert stats["requests"].get("media", 0) == 0


def test_bare_paths_resolve_against_media_url(tmp_path: Path) -> None:
    settings = archive_settings("https://media.example:1777", tmp_path)
    tenant = settings.tenants[0]
    assert resolve_url(tenant, "2024/01/13/a b&c.mp3") == (
        "https://media.example:1777/IPCCMedia/MP3Export.do?url=2024/01/13/a%20b%26c.mp3&source=ipcc")
    full = "https://media.example:1777/IPCCMedia/MP3Export.do?url=x.mp3&source=ipcc"
    assert resolve_url(tenant, full) == full


async def test_hostile_call_ids_and_paths_cannot_escape(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=30)
    real = with_recordings(state)[0]
    evil_ids = ["../../etc/passwd", "..\\x", "a/b", "%2e%2e", "n\ufffdul", "L" * 3000, "..", "."]
    records = [{**real, "call_id": cid} for cid in evil_ids]
    records.append({**real, "call_id": "evil-url", "recording_url": "../../../../etc/passwd"})
    root = tmp_path / "data"
    with running_fake(state) as base:
        settings = archive_settings(base, root)
        await load(engine, settings, records)
        report = await Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run()
    assert report.counts == {"stored": len(evil_ids), "expired": 1}  # the fake has no such file
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == len(evil_ids)
    recordings = settings.recordings_dir.resolve()
    assert all(p.resolve().is_relative_to(recordings) for p in files)
    assert all(p.read_bytes() == recording_bytes(path_of(real), state.media_size) for p in files)
    got = await rows(engine)
    assert set(got) == {r["call_id"] for r in records}


async def test_the_scheduled_job_archives_under_its_lock(engine: AsyncEngine, tmp_path: Path) -> None:
    from callstore.composition import build_jobs
    from store.jobs import job_lock

    state = fake_state(calls=20)
    records = with_recordings(state)[:3]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, records)
        job = next(j for j in build_jobs(settings) if j.name == "recordings")
        assert job.disabled_reason is None
        async with job_lock(engine, job.name) as held:
            assert held is not None
            async with job_lock(engine, job.name) as second:
                assert second is None  # another replica skips the run
            await job.run(engine, settings)
    assert {r["status"] for r in (await rows(engine)).values()} == {"stored"}
    assert len(list(settings.recordings_dir.rglob("*.mp3"))) == 3


def test_without_any_media_host_the_job_is_off_not_failing_every_recording() -> None:
    """A webhook-only deployment (no API or media URL) has no host to fetch from:
    the job is off with a reason, and recordings wait as pending."""
    from store.settings import parse_settings
    from sync.recordings import media_disabled_reason

    webhook_only = parse_settings({"ALOHUB_WEBHOOK_KEYS": "key-one-1234567890"})
    assert webhook_only.tenants[0].media_origins == frozenset()
    assert "ALOHUB_MEDIA_HOSTS" in (media_disabled_reason(webhook_only) or "")
    with_api = parse_settings({"ALOHUB_WEBHOOK_KEYS": "key-one-1234567890", "ALOHUB_API_URL": "https://2.alohub.vn:9909/api"})
    assert media_disabled_reason(with_api) is None
