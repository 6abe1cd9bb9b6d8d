"""Benchmark: backfill 100,000 calls from the fake Alohub into Postgres, callstore vs dlt.

    python3 -m venv /tmp/bench-dlt && /tmp/bench-dlt/bin/pip install -r bench/backfill/requirements.txt
    .venv/bin/python bench/backfill/run.py --dlt-python /tmp/bench-dlt/bin/python [--calls 100000]

The fake runs in its own process (no rate limit, pages capped at --limit);
Postgres is a fresh embedded server (or BENCH_DATABASE_URL, a server on which
databases may be created). Both loaders page the same API with the same page
size into the same server, one after the other, in one run; the result is
the ratio of their calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from store import migrate  # noqa: E402
from store.embedded import EmbeddedPostgres  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.settings import TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402
from sync.backfill import Options, backfill  # noqa: E402
from sync.client import AlohubClient, new_http_client  # noqa: E402
from sync.sources import SearchCallV2, Window  # noqa: E402

KEY = "bench-api-key"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2024, 1, 1, tzinfo=ZONE)
UNTIL = datetime(2024, 1, 8, tzinfo=ZONE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


async def create_db(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_db(server_url, name)


async def run_callstore(db_url: str, base: str, calls: int, limit: int, concurrency: int, batch: int) -> float:
    engine = create_engine(db_url, pool_size=4)
    tenant = TenantSettings("default", api_url=f"{base}/api", xapi_url=base, api_key=KEY, media_url=base)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await sync_tenants(conn, [tenant])
        async with new_http_client() as http:
            source = SearchCallV2(AlohubClient(http, tenant))
            started = time.monotonic()
            report = await backfill(engine, tenant, source, Window(SINCE, UNTIL),
                                    options=Options(limit=limit, concurrency=concurrency, batch_size=batch,
                                                    chunk=UNTIL - SINCE))
            seconds = time.monotonic() - started
        assert report.status == "ok" and report.records == calls, report.summary()
        async with engine.connect() as conn:
            from sqlalchemy import text

            stored = await conn.scalar(text("SELECT count(*) FROM callstore.calls"))
        assert stored == calls, stored
        return seconds
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--dlt-python", required=True, help="python of a venv with bench/backfill/requirements.txt")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    tmp.chmod(0o711)  # as root the server runs as callstore-pg, which must pass through
    server: EmbeddedPostgres | None = None
    server_url = os.environ.get("BENCH_DATABASE_URL")
    if server_url is None:
        server = EmbeddedPostgres(tmp / "pg")
        server.ensure_started()
        server_url = server.superuser_url("postgres")
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "callstore", "fake-alohub", "serve", "--port", str(port), "--calls", str(args.calls),
         "--seed", "1", "--since", SINCE.date().isoformat(), "--until", UNTIL.date().isoformat(),
         "--api-key", KEY, "--max-limit", str(args.limit)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_URL"))},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/_fake/stats", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        ours_url = asyncio.run(create_db(server_url, "bench_callstore"))
        dlt_url = asyncio.run(create_db(server_url, "bench_dlt"))
        ours = asyncio.run(run_callstore(ours_url, base, args.calls, args.limit, args.concurrency, args.batch))
        env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "BENCH_DLT_DIR": str(tmp / "dlt")}
        out = subprocess.run(
            [args.dlt_python, str(Path(__file__).with_name("dlt_load.py")), base, KEY, dlt_url,
             SINCE.isoformat(), UNTIL.isoformat(), str(args.limit)],
            capture_output=True, text=True, env=env, check=True,
        )
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        assert theirs["rows"] == args.calls, theirs
        ours_rate = args.calls / ours
        dlt_rate = args.calls / theirs["seconds"]
        print(json.dumps({
            "calls": args.calls, "page_limit": args.limit, "concurrency": args.concurrency, "batch": args.batch,
            "callstore_seconds": round(ours, 2), "callstore_calls_per_s": round(ours_rate),
            "dlt_seconds": round(theirs["seconds"], 2), "dlt_calls_per_s": round(dlt_rate),
            "ratio": round(ours_rate / dlt_rate, 2),
        }))
    finally:
        fake.terminate()
        fake.wait(timeout=30)
        if server is not None:
            server.stop(mode="fast")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
