"""`/metrics`: open by default, as Prometheus expects; with
CALLSTORE_METRICS_TOKEN only a scraper that sends it reads it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.app import create_app
from store.errors import ConfigError
from store.settings import parse_settings
from tests.conftest import serving
from tests.security.world import two_tenant_settings

TOKEN = "metrics-token-0123456789abcdef"


async def test_metrics_open_by_default_and_guarded_with_a_token(engine: AsyncEngine, tmp_path: Path) -> None:
    settings = two_tenant_settings(data_dir=tmp_path)
    async with serving(create_app(settings, engine)) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/metrics")).status_code == 200
    guarded = replace(settings, metrics_token=TOKEN)
    async with serving(create_app(guarded, engine)) as url, httpx.AsyncClient(base_url=url) as client:
        for headers in ({}, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"},
                        {"Authorization": "Basic abc"}):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized" and TOKEN not in r.text
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "callstore_webhook_requests" in ok.text


def test_metrics_token_setting() -> None:
    assert parse_settings({"CALLSTORE_METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
    assert parse_settings({}).metrics_token is None
    try:
        parse_settings({"CALLSTORE_METRICS_TOKEN": "short"})
    except ConfigError as exc:
        assert str(exc).startswith("CALLSTORE_METRICS_TOKEN:") and "short" not in str(exc).split(":", 1)[1]
    else:
        raise AssertionError("a short metrics token was accepted")
    assert repr(parse_settings({"CALLSTORE_METRICS_TOKEN": TOKEN})).count(TOKEN) == 0
