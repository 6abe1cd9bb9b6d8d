"""Webhook keys long enough not to be guessed, and refused requests that
cannot flood the log: one line a minute per remote address, with a count."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from receiver.refusals import RefusalLog
from store.errors import ConfigError
from store.settings import parse_settings
from tests.callstore.test_cli import run
from tests.conftest import WEBHOOK_KEY
from tests.security.world import World


def test_a_short_key_is_refused_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"ALOHUB_WEBHOOK_KEYS": "good-key-0123456789,fifteen-chars!"})
    assert str(caught.value).startswith("ALOHUB_WEBHOOK_KEYS: each key must be at least 16 characters")
    assert parse_settings({"ALOHUB_WEBHOOK_KEYS": "sixteen-chars-ok"}).tenants[0].webhook_keys == ("sixteen-chars-ok",)
    f = tmp_path / "tenants.toml"
    f.write_text('[tenants.acme]\nwebhook_keys = ["short-key-1"]\n')
    r = run("serve", env={"CALLSTORE_TENANTS_FILE": str(f)}, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "callstore: error: CALLSTORE_TENANTS_FILE [tenants.acme] webhook_keys: each key must be at least 16 "
        "characters, e.g. from `openssl rand -hex 24`"]
    assert "short-key-1" not in r.stderr


async def test_repeated_401s_are_one_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="callstore.receiver.refused"):
        for i in range(30):
            r = await world.client.post("/webhooks/alohub", content=b'{"call_id": "x"}',
                                        headers={"Authorization": f"{WEBHOOK_KEY}-guess-{i}"})
            assert r.status_code == 401
            assert (await world.client.get("/api/calls", headers={"Authorization": f"Bearer cs_{i}"})
                    ).status_code == 401
        ok = await world.client.post("/webhooks/alohub", content=b'{"call_id": "x"}',
                                     headers={"Authorization": WEBHOOK_KEY})
        assert ok.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "callstore.receiver.refused"]
    assert len(lines) == 2, lines
    assert any(line.startswith("webhook delivery refused") for line in lines)
    assert any(line.startswith("API request refused") for line in lines)
    assert all("127.0.0.1" in line and WEBHOOK_KEY not in line for line in lines)


def test_the_count_covers_the_quiet_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog("webhook delivery", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="callstore.receiver.refused"):
        for _ in range(10):
            refusals.refused("198.51.100.7", "wrong webhook key")
        refusals.refused("198.51.100.8", "wrong webhook key")
        now[0] = 61.0
        refusals.refused("198.51.100.7", "wrong webhook key")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "webhook delivery refused (wrong webhook key): 1 from 198.51.100.7 in the last 60 s",
        "webhook delivery refused (wrong webhook key): 1 from 198.51.100.8 in the last 60 s",
        "webhook delivery refused (wrong webhook key): 10 from 198.51.100.7 in the last 60 s",
    ]
