"""Playback of archived recordings: roles, Range, ETag, the access audit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from store.recording_store import LocalRecordingStore
from store.tokens import create_token
from sync.fake import recording_bytes, running_fake
from sync.recordings import FetchOptions, Fetcher, enqueue
from tests.conftest import serving
from tests.recording_fixtures import archive_settings, fake_state, load, with_recordings


@dataclass
class Archive:
    client: httpx.AsyncClient
    reader: dict[str, str]
    compliance: dict[str, str]
    call_id: str
    data: bytes
    pending_call: str
    store: LocalRecordingStore
    storage_key: str


@pytest.fixture
async def archive(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Archive]:
    state = fake_state(calls=30)
    records = with_recordings(state)[:3]
    with running_fake(state) as base:
        settings = archive_settings(base, tmp_path)
        await load(engine, settings, records[:2])
        store = LocalRecordingStore(settings.recordings_dir)
        await Fetcher(engine, settings, store, FetchOptions(rate=0)).run()
    await load(engine, settings, records[2:])
    async with engine.begin() as conn:
        assert await enqueue(conn) == 1  # enqueued, not yet downloaded: pending
        _, reader = await create_token(conn, "grafana", "reader", "default")
        _, compliance = await create_token(conn, "officer", "compliance", "default")
        key = await conn.scalar(text("SELECT storage_key FROM callstore.recordings WHERE call_id = :c"),
                                {"c": records[0]["call_id"]})
    app = create_app(settings, engine, build_extensions(settings, engine, "all", Metrics()))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Archive(client, {"Authorization": f"Bearer {reader}"}, {"Authorization": f"Bearer {compliance}"},
                      records[0]["call_id"], recording_bytes(records[0]["recording_url"], state.media_size),
                      records[2]["call_id"], store, key)


async def audit(engine: AsyncEngine) -> list[dict[str, object]]:
    """The audit rows, once every served row has been completed (that happens
    after the response, so a client may see the body first)."""
    for _ in range(250):
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT * FROM analytics.recording_access ORDER BY id"))
            rows = [dict(r._mapping) for r in result]
        if all(r["bytes_planned"] == 0 or r["bytes_sent"] for r in rows):
            return rows
        await asyncio.sleep(0.02)
    return rows


async def test_whole_file_and_ranges(archive: Archive, engine: AsyncEngine) -> None:
    c, h, data = archive.client, archive.compliance, archive.data
    full = await c.get(f"/api/recordings/{archive.call_id}", headers=h)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "audio/mpeg" and full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'

    part = await c.get(f"/api/recordings/{archive.call_id}", headers={**h, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert part.headers["content-length"] == "1000"

    tail = await c.get(f"/api/recordings/{archive.call_id}", headers={**h, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    open_end = await c.get(f"/api/recordings/{archive.call_id}", headers={**h, "Range": f"bytes={len(data) - 10}-"})
    assert open_end.status_code == 206 and open_end.content == data[-10:]
    past = await c.get(f"/api/recordings/{archive.call_id}", headers={**h, "Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
    assert past.json()["error"] == "range_not_satisfiable"
    # Several ranges, or nonsense: ignored, the whole file.
    multi = await c.get(f"/api/recordings/{archive.call_id}", headers={**h, "Range": "bytes=0-1,5-9"})
    assert multi.status_code == 200 and multi.content == data
    stale = await c.get(f"/api/recordings/{archive.call_id}",
                        headers={**h, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == len(data)

    rows = await audit(engine)
    assert [(r["status_code"], r["bytes_sent"], r["complete"]) for r in rows] == [
        (200, len(data), True), (206, 1000, True), (206, 100, True), (206, 10, True), (416, 0, True),
        (200, len(data), True), (200, len(data), True),
    ]
    assert rows[1]["range_header"] == "bytes=1000-1999" and rows[1]["first_byte"] == 1000 and rows[1]["last_byte"] == 1999
    assert all(r["token_name"] == "officer" and r["client_addr"] == "127.0.0.1" for r in rows)
    assert all(r["sha256"] == hashlib.sha256(data).hexdigest() for r in rows)


async def test_roles_and_missing(archive: Archive, engine: AsyncEngine) -> None:
    c = archive.client
    denied = await c.get(f"/api/recordings/{archive.call_id}", headers=archive.reader)
    assert denied.status_code == 403 and denied.json() == {"error": "forbidden", "detail": "this route needs a compliance token"}
    assert (await c.get(f"/api/recordings/{archive.call_id}")).status_code == 401
    pending = await c.get(f"/api/recordings/{archive.pending_call}", headers=archive.compliance)
    assert pending.status_code == 404 and "pending" in pending.json()["detail"]
    unknown = await c.get("/api/recordings/no-such-call", headers=archive.compliance)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_stored"
    nul = await c.get("/api/recordings/a%00b", headers=archive.compliance)
    assert nul.status_code == 400 and nul.json()["detail"].startswith("call_id")
    # Nothing was served; every refusal but the malformed id is audited, without bytes.
    rows = await audit(engine)
    assert [(r["status_code"], r["bytes_sent"]) for r in rows] == [(403, 0), (401, 0), (404, 0), (404, 0)]

    archive.store.path(archive.storage_key).write_bytes(b"ID3 tampered")
    altered = await c.get(f"/api/recordings/{archive.call_id}", headers=archive.compliance)
    assert altered.status_code == 500 and altered.json()["error"] == "integrity"


async def test_client_leaving_early_is_audited_as_incomplete(archive: Archive, engine: AsyncEngine) -> None:
    # A file far larger than the socket buffers, so that hanging up stops the stream.
    big = b"ID3" + bytes(32 * 1024 * 1024)
    archive.store.path(archive.storage_key).write_bytes(big)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE callstore.recordings SET size = :n, sha256 = :h WHERE call_id = :c"),
                           {"n": len(big), "h": hashlib.sha256(big).hexdigest(), "c": archive.call_id})
    async with archive.client.stream("GET", f"/api/recordings/{archive.call_id}", headers=archive.compliance) as r:
        assert r.status_code == 200
        async for _ in r.aiter_raw():
            break  # one chunk, then hang up
    rows = await audit(engine)  # the server notices the disconnect asynchronously
    assert len(rows) == 1 and rows[0]["bytes_planned"] == len(big)
    assert 0 < int(rows[0]["bytes_sent"]) < len(big)  # type: ignore[call-overload]
    assert rows[0]["complete"] is False
