"""An alert's peak rate comes from windows with enough calls, never from a window of one call."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.alerts.figures import Figures
from reports.alerts.job import run_alerts
from store.tenants import sync_tenants
from tests.conftest import test_settings as make_settings
from tests.reports.alerts.calls import Call, insert_calls, steady
from tests.reports.alerts.test_job import SALES, SPIKE, T0, ZONE
from tests.reports.test_report_surfaces import cli


def test_reportable_rate_needs_the_minimum_volume() -> None:
    one_call = Figures(offered=1, abandoned=1)
    assert one_call.abandon_rate == 1.0 and one_call.reportable_rate(10) is None
    assert Figures(offered=10, answered=5, abandoned=5).reportable_rate(10) == 0.5


async def test_peak_ignores_windows_under_the_minimum_volume(engine: AsyncEngine, db_url: str, tmp_path: Path) -> None:
    settings = make_settings()
    async with engine.begin() as conn:
        await sync_tenants(conn, settings.tenants)
    calls: list[Call] = []
    for k in range(1, 5):  # the usual traffic of the same hour, four weeks back
        calls += steady(f"s{k}", SALES, T0 - timedelta(weeks=k, minutes=60), T0 - timedelta(weeks=k, minutes=-60), 2, 20)
    # Today: steady traffic and a spike of abandons that both stop at once,
    # then one more abandoned call: the last windows before the alert clears
    # hold that call alone (100 %).
    calls += steady("today", SALES, T0 - timedelta(minutes=60), SPIKE[1], 2, 20)
    t, i = SPIKE[0], 0
    while t < SPIKE[1]:
        calls.append(Call(f"spike-{i}", SALES, t, "abandoned", 50))
        t += timedelta(seconds=15)
        i += 1
    calls.append(Call("lone", SALES, SPIKE[1] + timedelta(minutes=2), "abandoned", 50))
    await insert_calls(engine, calls)
    async with httpx.AsyncClient() as client:
        for m in range(0, 40):
            await run_alerts(engine, settings, now=T0 + timedelta(minutes=m, seconds=7), client=client,
                             retry_delays=(0,))
    async with engine.connect() as conn:
        [alert] = (await conn.execute(text("SELECT * FROM analytics.alerts"))).all()
    assert alert.state == "resolved"
    # The busiest windows were about two thirds abandoned; 100 % came only from the lone call's windows.
    assert alert.abandon_rate <= alert.peak_abandon_rate < 0.9, alert.peak_abandon_rate

    # `alerts list` prints the alert's instants in the tenant's zone, with its offset.
    listed = await asyncio.to_thread(cli, db_url, tmp_path, "alerts", "list")
    assert listed.returncode == 0, listed.stderr
    fired = alert.fired_at.astimezone(ZONE).isoformat(timespec="seconds")
    assert f"fired {fired} " in listed.stdout and fired.endswith("+07:00"), listed.stdout
