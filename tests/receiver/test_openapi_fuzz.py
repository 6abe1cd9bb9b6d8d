"""Schemathesis fuzzes every operation documented in /openapi.json: no 5xx.

The CLI runs in a subprocess against the app on a real socket (the app runs
in this test's event loop, so the fuzzer must not block it). Bounded: at most
50 examples per operation, fixed seed.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import WEBHOOK_KEY
from tests.receiver.test_webhook import rows


async def test_documented_api_never_answers_5xx(receiver: str, engine: AsyncEngine, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(st), "run", f"{receiver}/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "50", "--seed", "7", "--no-shrink", "--workers", "1", "--no-color",
        "--header", f"Authorization: {WEBHOOK_KEY}",
        "--phases", "examples,coverage,fuzzing",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-4000:]
    async with httpx.AsyncClient() as client:
        doc = (await client.get(f"{receiver}/openapi.json")).json()
    operations = sum(len(item) for item in doc["paths"].values())
    assert re.search(rf"Tested: {operations}\b", report) and "No issues found" in report, report[-4000:]
    # The fuzzer did reach the database: accepted events and kept rejections.
    assert await rows(engine, "SELECT 1 FROM callstore.dead_letters LIMIT 1")
