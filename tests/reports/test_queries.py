"""`GET /api/reports/queues` and `callstore report queues` give the same figures."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.cli import main
from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from reports.rollups import refresh_rollups
from store.ingest import Delivery, ingest
from store.settings import Settings
from store.tenants import sync_tenants
from store.tokens import create_token
from tests.conftest import serving
from tests.reports.test_rollups import QUEUES, UNKNOWN_HOTLINE, payload


async def seed(engine: AsyncEngine, settings: Settings) -> str:
    tenants = {t.tenant_id: t for t in settings.tenants}
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
        await conn.execute(text("INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number_canonical) "
                                "VALUES ('default', 101, 'Sales', :h)"), {"h": QUEUES[101]})
        now = datetime.now(timezone.utc)
        calls = [
            ("a1", "2026-11-20 09:00:10", "answered", 12, QUEUES[101]),
            ("a2", "2026-11-20 09:14:59", "abandoned", 30, QUEUES[101]),
            ("a3", "2026-11-20 09:15:00", "abandoned", 3, QUEUES[101]),
            ("a4", "2026-11-20 10:05:00", "answered", 40, UNKNOWN_HOTLINE),
            ("a5", "2026-11-21 23:59:59", "ringing", 0, QUEUES[101]),
        ]
        await ingest(conn, [
            Delivery("default", cid, "webhook",
                     payload(cid, datetime.fromisoformat(start), kind=kind, wait=wait, talk=60, hotline=hotline), now)
            for cid, start, kind, wait, hotline in calls
        ], tenants)
        _, token = await create_token(conn, "bi", "admin", None)  # the operator: it must name a tenant
    async with engine.begin() as conn:
        await refresh_rollups(conn)  # the scheduled job's work: reports read the rollups as they are
    return token


async def test_api_and_cli_return_the_same_figures(engine: AsyncEngine, settings: Settings, db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    token = await seed(engine, settings)
    app = create_app(settings, engine, build_extensions(settings, engine, "all", Metrics()))
    auth = {"Authorization": f"Bearer {token}"}
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        q = {"from": "2026-11-20", "to": "2026-11-23", "tenant": "default"}
        api = {}
        for interval in ("15m", "hour", "day"):
            r = await client.get("/api/reports/queues", params=q | {"interval": interval}, headers=auth)
            assert r.status_code == 200, r.text
            api[interval] = r.json()
        r = await client.get("/api/reports/queues", params=q | {"interval": "15m", "format": "csv"}, headers=auth)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        api_csv = r.text

        # Bad parameters: 400 naming the parameter; no token: 401.
        for bad, name in ((q | {"interval": "fortnight"}, "interval"), ({"tenant": "default"}, "from"),
                          (q | {"queue": "abc"}, "queue"), (q | {"from": "yesterday"}, "from"),
                          (q | {"to": "2026-11-19"}, "to"), (q | {"colour": "red"}, "colour"),
                          ({"from": "2026-11-20"}, "tenant"), (q | {"format": "table"}, "format")):
            r = await client.get("/api/reports/queues", params=bad, headers=auth)
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"] == "bad_request" and r.json()["detail"].startswith(f"{name}:"), r.json()
        assert (await client.get("/api/reports/queues", params=q)).status_code == 401
        spec = (await client.get("/openapi.json")).json()
        assert "/api/reports/queues" in spec["paths"]

    rows = api["15m"]["rows"]
    by_bucket = {(r["queue_id"], r["bucket_local"]): r for r in rows}
    first = by_bucket[(101, "2026-11-20T09:00:00")]
    assert (first["offered"], first["answered"], first["abandoned"], first["answered_within_sla"]) == (2, 1, 1, 1)
    assert first["service_level"] == 0.5 and first["abandon_rate"] == 0.5 and first["asa_seconds"] == 12.0
    second = by_bucket[(101, "2026-11-20T09:15:00")]
    assert (second["short_abandoned"], second["service_level"], second["abandon_rate"]) == (1, None, None)
    assert by_bucket[(None, "2026-11-20T10:00:00")]["queue_name"] is None
    assert by_bucket[(101, "2026-11-21T23:45:00")]["in_progress"] == 1
    day = {(r["queue_id"], r["bucket_local"]): r for r in api["day"]["rows"]}
    assert day[(101, "2026-11-20T00:00:00")]["offered"] == 3

    # The same from the command line (on the same database).
    monkeypatch.setenv("DATABASE_URL", db_url)
    for interval in ("15m", "hour", "day"):
        code = await asyncio.to_thread(main, ["report", "queues", "--from", "2026-11-20", "--to", "2026-11-23",
                                              "--interval", interval, "--format", "json"])
        assert code == 0
        cli = json.loads(capsys.readouterr().out)
        assert cli["rows"] == api[interval]["rows"] and cli["rows"]
    assert await asyncio.to_thread(main, ["report", "queues", "--from", "2026-11-20", "--to", "2026-11-23",
                                          "--interval", "15m", "--format", "csv"]) == 0
    assert capsys.readouterr().out == api_csv
    assert await asyncio.to_thread(main, ["report", "queues", "--from", "2026-11-20", "--interval", "year"]) == 2
    assert await asyncio.to_thread(main, ["report", "queues", "--from", "soon"]) == 2
    assert "--from:" in capsys.readouterr().err


async def test_cli_thresholds_recompute_history(engine: AsyncEngine, settings: Settings, db_url: str,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    await seed(engine, settings)
    monkeypatch.setenv("DATABASE_URL", db_url)
    args = ["report", "queues", "--from", "2026-11-20", "--to", "2026-11-21", "--interval", "day",
            "--queue", "101", "--format", "json"]
    assert await asyncio.to_thread(main, args) == 0
    [before] = json.loads(capsys.readouterr().out)["rows"]
    assert (before["answered_within_sla"], before["short_abandoned"]) == (1, 1)
    assert await asyncio.to_thread(main, ["report", "thresholds", "set", "--queue", "101", "--sla-seconds", "10",
                                          "--short-abandon-seconds", "2"]) == 0
    assert await asyncio.to_thread(main, ["report", "thresholds", "list"]) == 0
    listing = capsys.readouterr().out
    assert "101" in listing and "(all history)" in listing
    assert await asyncio.to_thread(main, args) == 0
    [after] = json.loads(capsys.readouterr().out)["rows"]
    assert (after["answered_within_sla"], after["short_abandoned"]) == (0, 0)
    assert await asyncio.to_thread(main, ["report", "rebuild"]) == 0
    assert await asyncio.to_thread(main, ["report", "thresholds", "set", "--queue", "x", "--sla-seconds", "1",
                                          "--short-abandon-seconds", "1"]) == 2
