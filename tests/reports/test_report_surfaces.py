"""The reports as a supervisor reads them: the real `callstore` console script,
run in a subprocess from another directory, and the same reports over HTTP."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from callstore.composition import build_extensions
from receiver.app import create_app
from receiver.metrics import Metrics
from reports.agent_rollups import refresh_agent_rollups
from reports.rollups import refresh_rollups
from store.ingest import Delivery, ingest
from store.settings import Settings
from tests.conftest import serving
from tests.reports.test_queries import seed
from tests.reports.test_rollups import QUEUES, payload

CALLSTORE = str(Path(sys.executable).with_name("callstore"))
HOSTILE = '=HYPERLINK("http://x")\x1b[31m'
RANGE = ["--from", "2026-11-20", "--to", "2026-11-23"]


async def seed_more(engine: AsyncEngine, settings: Settings) -> str:
    """The calls of test_queries.seed, a queue with a hostile name, and another tenant's queue."""
    token = await seed(engine, settings)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number_canonical) "
                                "VALUES ('default', 102, :n, :h), ('acme', 555, 'AcmeOnly', :h)"),
                           {"n": HOSTILE, "h": QUEUES[102]})
        await ingest(conn, [Delivery("default", "h1", "webhook",
                                     payload("h1", datetime(2026, 11, 20, 9, 5), kind="answered", wait=5, talk=30,
                                             hotline=QUEUES[102]), datetime.now(timezone.utc))],
                     {t.tenant_id: t for t in settings.tenants})
        await refresh_rollups(conn)  # the scheduled jobs' work: reports read the rollups as they are
        await refresh_agent_rollups(conn)
    return token


def cli(db_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "DATABASE_URL": db_url}
    return subprocess.run([CALLSTORE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


async def test_cli_reports_read_like_a_report(engine: AsyncEngine, settings: Settings, db_url: str,
                                              tmp_path: Path) -> None:
    await seed_more(engine, settings)
    run = lambda *a: asyncio.to_thread(cli, db_url, tmp_path, *a)  # noqa: E731

    table = await run("report", "queues", *RANGE, "--interval", "day")
    assert table.returncode == 0, table.stderr
    out = table.stdout
    for want in ("Period", "Queue", "Offered", "Service level", "Abandon rate", "Sales", "unassigned", "Total",
                 "Times are local"):
        assert want in out, (want, out)
    assert any(line.startswith("Offered ") and "inbound calls of the queue" in line for line in out.splitlines())
    assert "\x1b" not in out and "\ufffd[31m" in out  # the hostile name cannot drive the terminal
    total_line = next(line for line in out.splitlines() if line.startswith("Total"))
    # Offered and answered of every row (the exact totals are checked on the JSON below).
    assert total_line.split()[1:3] == ["6", "3"], total_line

    as_json = await run("report", "queues", *RANGE, "--interval", "day", "--format", "json")
    body = json.loads(as_json.stdout)
    t = body["totals"]
    # Summed counts, ratios recomputed from them (never an average of the rows' ratios).
    assert (t["offered"], t["answered"], t["abandoned"], t["short_abandoned"], t["in_progress"]) == (6, 3, 2, 1, 1)
    assert math.isclose(t["service_level"], 2 / 4) and math.isclose(t["abandon_rate"], 1 / 4)
    assert math.isclose(t["asa_seconds"], (12 + 40 + 5) / 3) and t["max_wait_seconds"] == 40
    assert body["rows"][0]["bucket_start"] == "2026-11-20T00:00:00+07:00" and body["timezone"] == "Asia/Ho_Chi_Minh"

    by_name = await run("report", "queues", *RANGE, "--interval", "DAY", "--queue", "sales", "--format", "json")
    by_id = await run("report", "queues", *RANGE, "--interval", "day", "--queue", "101", "--format", "json")
    assert by_name.returncode == 0 and json.loads(by_name.stdout)["rows"] == json.loads(by_id.stdout)["rows"]
    assert {r["queue_id"] for r in json.loads(by_id.stdout)["rows"]} == {101}
    for unknown in ("999", "AcmeOnly", "Nope"):  # another tenant's queue is as unknown as a missing one
        bad = await run("report", "queues", *RANGE, "--queue", unknown)
        assert bad.returncode == 2 and bad.stdout == "", bad
        assert bad.stderr.startswith(f"callstore: error: --queue: no queue '{unknown}'") and "Sales (101)" in bad.stderr
        assert bad.stderr.count("\n") == 1 and "\x1b" not in bad.stderr  # the hostile name is listed harmlessly

    week = json.loads((await run("report", "queues", "--from", "2026-11-16", "--to", "2026-11-30",
                                 "--interval", "week", "--format", "json")).stdout)
    assert {r["bucket_local"] for r in week["rows"]} == {"2026-11-16T00:00:00"}  # Monday, local
    assert week["totals"] == t
    month = json.loads((await run("report", "queues", "--from", "2026-11-01", "--to", "2026-12-01",
                                  "--interval", "month", "--format", "json")).stdout)
    assert {r["bucket_start"] for r in month["rows"]} == {"2026-11-01T00:00:00+07:00"} and month["totals"] == t

    xlsx = tmp_path / "queues.xlsx"
    done = await run("report", "queues", *RANGE, "--interval", "day", "--format", "xlsx", "--output", str(xlsx))
    assert done.returncode == 0, done.stderr
    from openpyxl import load_workbook

    wb = load_workbook(xlsx)
    [ws] = wb.worksheets
    headings = [c.value for c in ws[1]]
    sl = headings.index("Service level") + 1
    cells = {ws.cell(row=r, column=2).value: r for r in range(ws.max_row, 1, -1)}  # the first row of each queue
    sales = cells["Sales"]
    assert ws.cell(row=sales, column=1).is_date and ws.cell(row=sales, column=3).value == 3
    assert ws.cell(row=sales, column=sl).number_format == "0.0%" and isinstance(ws.cell(row=sales, column=sl).value, float)
    hostile = ws.cell(row=cells[HOSTILE.replace("\x1b", "\ufffd")], column=2)
    assert hostile.data_type == "s"  # text, not a formula
    assert any(ws.cell(row=r, column=1).value == "Total" for r in range(2, ws.max_row + 1))

    agents = await run("report", "agents", *RANGE, "--format", "json")
    assert agents.returncode == 0, agents.stderr
    a = json.loads(agents.stdout)
    rows = {(r["agent"], r["day"]): r for r in a["rows"]}
    first = rows[("agent1", "2026-11-20")]
    assert (first["answered"], first["outbound"], first["talk_seconds"], first["aht_seconds"]) == (3, 0, 150, 50.0)
    assert first["day_start"] == "2026-11-20T00:00:00+07:00"
    assert rows[("agent1", "2026-11-21")]["aht_seconds"] is None
    assert a["totals"] == {"answered": 3, "outbound": 0, "talk_seconds": 150, "hold_seconds": 0, "aht_seconds": 50.0}
    tokens = await run("tokens", "list")
    created = tokens.stdout.splitlines()[0].index("created")
    assert tokens.returncode == 0 and tokens.stdout.splitlines()[1][created:].split()[0].endswith("+07:00"), \
        tokens.stdout
    table = await run("report", "agents", *RANGE, "--agent", "agent1")
    assert table.returncode == 0 and "Avg handle time" in table.stdout and "0:02:30" in table.stdout, table.stdout


async def test_api_reports_and_call_filters(engine: AsyncEngine, settings: Settings) -> None:
    token = await seed_more(engine, settings)
    app = create_app(settings, engine, build_extensions(settings, engine, "all", Metrics()))
    auth = {"Authorization": f"Bearer {token}"}
    q = {"from": "2026-11-20", "to": "2026-11-23", "tenant": "default"}
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=auth) as client:
        month = (await client.get("/api/reports/queues", params=q | {"interval": "Month", "queue": "SALES"})).json()
        assert [r["queue_id"] for r in month["rows"]] == [101] and month["queue"] == 101
        for params, name in ((q | {"queue": "999"}, "queue"), (q | {"queue": "AcmeOnly"}, "queue"),
                             (q | {"interval": "year"}, "interval"), (q | {"format": "pdf"}, "format")):
            r = await client.get("/api/reports/queues", params=params)
            assert r.status_code == 400 and r.json()["detail"].startswith(f"{name}:"), r.text
        r = await client.get("/api/reports/queues", params=q | {"format": "XLSX"})
        assert r.status_code == 200 and r.content[:2] == b"PK"

        agents = (await client.get("/api/reports/agents", params=q)).json()
        assert agents["totals"]["answered"] == 3 and {r["agent"] for r in agents["rows"]} == {"agent1"}
        csv_body = (await client.get("/api/reports/agents", params=q | {"format": "csv"})).text
        assert csv_body.splitlines()[0].startswith("tenant_id,agent,day") and csv_body.splitlines()[-1].startswith(",Total")
        r = await client.get("/api/reports/agents", params={"from": "2026-11-20", "tenant": "nope"})
        assert r.status_code == 404  # a tenant the token cannot see answers as one that does not exist
        assert (await client.get("/api/reports/agents", params=q, headers={"Authorization": ""})).status_code == 401

        abandoned = (await client.get("/api/calls", params={"status": "ABANDONED", "tenant": "default"})).json()["calls"]
        assert [c["call_id"] for c in abandoned] == ["a2"]
        bogus = await client.get("/api/calls", params={"status": "bogus", "tenant": "default"})
        assert bogus.status_code == 400
        detail = bogus.json()["detail"]
        assert detail.startswith("status:") and "abandoned" in detail and "in_progress" in detail
        [call] = (await client.get("/api/calls", params={"transaction_id": "", "tenant": "default",
                                                        "from": "2026-11-20T09:00:00", "to": "2026-11-20T09:00:11"})
                  ).json()["calls"]
        assert call["started_at"] == "2026-11-20T09:00:10+07:00" and call["started_at_local"] == "2026-11-20T09:00:10"
        assert call["local_date"] == "2026-11-20"
        detail_body = (await client.get("/api/calls/a1", params={"tenant": "default"})).json()
        assert detail_body["call"]["ended_at"].endswith("+07:00")
        assert all(e["received_at"].endswith("+07:00") for e in detail_body["events"])


@pytest.mark.parametrize("args", [["--interval", "fortnight"], ["--format", "pdf"]])
def test_bad_choices_exit_2(args: list[str], tmp_path: Path) -> None:
    r = cli("postgresql://127.0.0.1:1/none", tmp_path, "report", "queues", "--from", "2026-11-20", *args)
    assert r.returncode == 2 and args[0] in r.stderr
