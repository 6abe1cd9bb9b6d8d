"""`callstore campaigns add|remove|list` and `callstore sync-campaigns` as a user runs them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.fake import build_state, running_fake
from sync.fake.campaigns import generate_campaigns
from tests.callstore.test_cli import run
from tests.callstore.test_sync_commands import env_for
from tests.sync.alohub import API_KEY, SINCE, UNTIL


@pytest.fixture
def fake() -> Iterator[str]:
    state = build_state(calls=1, seed=2, since=SINCE, until=UNTIL, api_key=API_KEY)
    state.campaigns = generate_campaigns(random.Random(3), [f"09{n:08d}" for n in range(12)])
    with running_fake(state) as url:
        yield url


async def test_campaign_commands(db_url: str, engine: AsyncEngine, fake: str, tmp_path: Path) -> None:
    env = env_for(db_url, fake)
    added = await asyncio.to_thread(run, "campaigns", "add", "1042", "--name", "Gia hạn", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "campaign 1042 of tenant default: followed" in added.stdout
    bad = await asyncio.to_thread(run, "campaigns", "add", "x1", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "'x1' is not a campaign id" in bad.stderr
    synced = await asyncio.to_thread(run, "sync-campaigns", env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "campaign 1042: 6 contacts in 2 lists (6 new, 0 changed, 0 removed)" in synced.stdout
    assert API_KEY not in synced.stdout + synced.stderr
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date().isoformat()
    report = await asyncio.to_thread(run, "report", "campaigns", "--from", today, env=env, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    header, row = report.stdout.splitlines()[:2]
    assert header.split()[:4] == ["campaign", "name", "day", "contacts"]
    assert row.split()[:2] == ["1042", "Gia"] and "0.0 %" in row  # six contacts, none dialled yet
    bad = await asyncio.to_thread(run, "report", "campaigns", "--from", "soon", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "--from: 'soon' is not an ISO 8601" in bad.stderr
    listed = await asyncio.to_thread(run, "campaigns", "list", env=env, cwd=tmp_path)
    assert "1042" in listed.stdout and "Gia hạn" in listed.stdout and "+07:00" in listed.stdout
    removed = await asyncio.to_thread(run, "campaigns", "remove", "1042", env=env, cwd=tmp_path)
    assert removed.returncode == 0 and "history is kept" in removed.stdout
    again = await asyncio.to_thread(run, "campaigns", "remove", "1042", env=env, cwd=tmp_path)
    assert again.returncode == 2 and "is not followed" in again.stderr
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM callstore.campaign_contacts")) == 6
