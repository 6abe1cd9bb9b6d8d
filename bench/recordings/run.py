"""Benchmark: `callstore recordings fetch` against curl, same files, same parallelism, same run.

    .venv/bin/python bench/recordings/run.py [--files 1000] [--size 1048576] [--parallel 4] [--rounds 1]

Starts `callstore fake-alohub serve` (a subprocess, media size --size), loads
the calls of --files recordings into a database (DATABASE_URL, or an embedded
server in a temporary directory), then per round downloads every file:
curl via `xargs -P N -n 2 curl -o FILE URL` (one process per file), curl
`--parallel --parallel-max N` (one process), and `callstore recordings fetch
--concurrency N --rate 0` (a subprocess; its peak RSS from wait4). Between
rounds the archive is reset to pending. Prints a JSON summary.
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
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

KEY = "bench-media-key"
ICT = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE, UNTIL = "2024-01-13", "2024-01-20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> tuple[float, int, int, float]:
    """Wall seconds, exit code, peak RSS (KiB) and CPU seconds of one child process.

    The peak is VmHWM sampled from /proc: wait4's ru_maxrss would include this
    (large) Python parent's RSS, which a child inherits across fork and exec.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, **kw)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, proc.returncode, peak, usage.ru_utime + usage.ru_stime


async def load_calls(db_url: str, records: list[dict[str, Any]]) -> None:
    from store import migrate
    from store.engine import create_engine
    from store.ingest import Delivery, ingest
    from store.settings import TenantSettings
    from store.tenants import sync_tenants

    engine = create_engine(db_url, pool_size=2)
    try:
        await migrate.upgrade(engine)
        tenant = TenantSettings("default")
        async with engine.begin() as conn:
            await sync_tenants(conn, [tenant])
            await conn.execute(__import__("sqlalchemy").text("TRUNCATE callstore.recordings, callstore.recording_scan"))
            now = datetime.now(timezone.utc)
            for i in range(0, len(records), 1000):
                chunk = records[i : i + 1000]
                await ingest(conn, [Delivery("default", r["call_id"], "history", r, now) for r in chunk], {"default": tenant})
    finally:
        await engine.dispose()


async def reset(db_url: str) -> None:
    from sqlalchemy import text

    from store.engine import create_engine

    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE callstore.recordings SET status = 'pending', attempts = 0, "
                                    "next_attempt_at = now(), sha256 = NULL, size = NULL, storage_key = NULL"))
    finally:
        await engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024 * 1024)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recordings-"))
    work.chmod(0o711)  # as root the server runs as callstore-pg, which must pass through
    py = sys.executable
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = subprocess.Popen(
        [py, "-m", "callstore", "fake-alohub", "serve", "--port", str(port), "--calls", str(int(args.files * 2.2)),
         "--seed", "3", "--since", SINCE, "--until", UNTIL, "--media-size", str(args.size), "--api-key", KEY],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/_fake/stats", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        calls = json.loads(urllib.request.urlopen(f"{base}/_fake/calls", timeout=30).read())
        records = [r for r in calls if r.get("recording_url") and r.get("endtime")][: args.files]
        assert len(records) == args.files, f"only {len(records)} recordings"

        db_url = os.environ.get("DATABASE_URL")
        if db_url is None:
            from store.embedded import EmbeddedPostgres, ensure_database

            server = EmbeddedPostgres(work / "pg")
            server.ensure_started()
            asyncio.run(ensure_database(server))
            db_url = server.url()
        asyncio.run(load_calls(db_url, records))

        from urllib.parse import quote

        urls = [f"{base}/IPCCMedia/MP3Export.do?url={quote(r['recording_url'], safe='/')}&source=ipcc" for r in records]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_"))}
        env.update(DATABASE_URL=db_url, CALLSTORE_DATA_DIR=str(work / "data"), ALOHUB_API_KEY=KEY,
                   ALOHUB_MEDIA_URL=base, ALOHUB_MEDIA_HOSTS="127.0.0.1", CALLSTORE_LOG_LEVEL="WARNING")
        total_mb = args.files * args.size / 1e6
        rounds: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            out = work / f"curl-{rnd}"
            out.mkdir()
            pairs = "".join(f"{out}/{i}.mp3\n{u}\n" for i, u in enumerate(urls))
            start = time.perf_counter()
            subprocess.run(["xargs", "-P", str(args.parallel), "-n", "2", "curl", "-sf", "-H",
                                   f"Authorization: {KEY}", "-o"], input=pairs.encode(), check=True)
            xargs_s = time.perf_counter() - start
            shutil.rmtree(out)
            out.mkdir()
            cfg = work / "curl.cfg"
            cfg.write_text("".join(f'url = "{u}"\noutput = "{out}/{i}.mp3"\n' for i, u in enumerate(urls)))
            par_s, code, curl_rss, curl_cpu = timed(["curl", "-sf", "--no-progress-meter", "--parallel", "--parallel-max", str(args.parallel),
                                           "-H", f"Authorization: {KEY}", "-K", str(cfg)])
            assert code == 0
            shutil.rmtree(out)

            asyncio.run(reset(db_url))
            shutil.rmtree(work / "data", ignore_errors=True)
            fetch_s, code, fetch_rss, fetch_cpu = timed([py, "-m", "callstore", "recordings", "fetch", "--concurrency",
                                              str(args.parallel), "--rate", "0"], env=env, cwd=work,
                                             stdout=(work / "fetch.out").open("wb"))
            assert code == 0, "fetch failed"
            stored = sum(1 for _ in (work / "data" / "recordings").rglob("*.mp3"))
            assert stored == args.files, stored
            summary = (work / "fetch.out").read_text().strip()
            rounds.append({
                "fetch_says": summary,
                "curl_xargs_MBps": round(total_mb / xargs_s, 1),
                "curl_parallel_MBps": round(total_mb / par_s, 1),
                "fetch_MBps": round(total_mb / fetch_s, 1),
                "fetch_vs_curl_xargs": round(xargs_s / fetch_s, 2),
                "fetch_vs_curl_parallel": round(par_s / fetch_s, 2),
                "fetch_peak_rss_MB": round(fetch_rss / 1024, 1),
                "curl_parallel_peak_rss_MB": round(curl_rss / 1024, 1),
                "cpu_seconds": {"curl_parallel": round(curl_cpu, 2), "fetch": round(fetch_cpu, 2)},
                "seconds": {"curl_xargs": round(xargs_s, 2), "curl_parallel": round(par_s, 2), "fetch": round(fetch_s, 2)},
            })
        print(json.dumps({"files": args.files, "size": args.size, "parallel": args.parallel, "rounds": rounds}, indent=2))
        return 0
    finally:
        fake.terminate()
        fake.wait(timeout=30)
        if server is not None:
            server.stop(mode="immediate")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
