"""Schemathesis fuzzes every operation documented in /openapi.json: no 5xx.

The CLI runs in a subprocess against the app on a real socket (the app runs
in this test's event loop, so the fuzzer must not block it). Bounded: at most
50 examples per operation, fixed seed. Two runs, each with the credential its
routes accept, so that the fuzzed requests reach the handlers rather than
stopping at the key or token check: the webhook with a webhook key, /api/*
with an admin token (which holds every role), the rest unauthenticated.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from store.tokens import create_token
from tests.conftest import WEBHOOK_KEY
from tests.receiver.test_webhook import rows


async def schemathesis(url: str, cwd: Path, authorization: str, *filters: str) -> tuple[int, str]:
    st = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(st), "run", url,
        "--checks", "not_a_server_error",
        "--max-examples", "50", "--seed", "7", "--no-shrink", "--workers", "1", "--no-color",
        "--header", f"Authorization: {authorization}",
        "--phases", "examples,coverage,fuzzing", *filters,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_documented_api_never_answers_5xx(receiver: str, engine: AsyncEngine, tmp_path: Path) -> None:
    async with engine.begin() as conn:
        _, admin = await create_token(conn, "fuzz-admin", "admin", None)
    async with httpx.AsyncClient() as client:
        doc = (await client.get(f"{receiver}/openapi.json")).json()
    api = sum(len(item) for path, item in doc["paths"].items() if path.startswith("/api/"))
    rest = sum(len(item) for path, item in doc["paths"].items() if not path.startswith("/api/"))
    assert api >= 4 and rest >= 4, doc["paths"].keys()

    runs = [
        (f"Bearer {admin}", api, "--include-path-regex", "^/api/"),
        (WEBHOOK_KEY, rest, "--exclude-path-regex", "^/api/"),
    ]
    for authorization, operations, *filters in runs:
        code, report = await schemathesis(f"{receiver}/openapi.json", tmp_path, authorization, *filters)
        assert code == 0, report[-4000:]
        # Schemathesis may warn (404s for random ids, a tenant parameter the
        # schema cannot mark as conditionally required); failures are what count.
        cases = re.search(r"(\d+) generated, (\d+) passed", report)
        assert re.search(rf"Tested: {operations}\b", report) and cases, report[-4000:]
        assert cases[1] == cases[2] and "failed" not in report.rsplit("Test cases:", 1)[1], report[-4000:]
        assert admin not in report

    # The fuzzer reached the handlers: events were accepted and rejections kept,
    # and the API's searches were served (200s for an admin token).
    assert await rows(engine, "SELECT 1 FROM callstore.dead_letters LIMIT 1")
    assert await rows(engine, "SELECT 1 FROM callstore.raw_events LIMIT 1")
