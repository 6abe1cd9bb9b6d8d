"""bench/ingest: the webhook under many concurrent clients, against two baselines.

Targets, one uvicorn worker each, one after the other on the same machine and
the same PostgreSQL (fsync on):
  bare      a Starlette endpoint that reads the body and answers 200;
  naive     a SQLAlchemy session and a commit per request;
  callstore `callstore serve --role receiver` (micro-batched, 200 after commit).
For each: the most events/s C connections get (closed loop), then p50/p99
latency at a fixed 1,000 events/s (open loop). Afterwards every 200 that
callstore sent is checked to be in the database.

    .venv/bin/python bench/ingest/run.py [--database-url postgresql://...] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from store import migrate  # noqa: E402
from store.embedded import EmbeddedPostgres  # noqa: E402
from store.engine import create_engine  # noqa: E402

KEY = "bench-webhook-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"target exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("target did not start")


def with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def fresh_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(with_db(server_url, "postgres"))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = with_db(server_url, name)
    engine = create_engine(url, pool_size=1)
    await migrate.upgrade(engine)
    await engine.dispose()
    return url


def load(port: int, mode: str, args: argparse.Namespace, run: str) -> dict[str, object]:
    cmd = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--mode", mode,
           "--connections", str(args.connections), "--duration", str(args.duration), "--rate", str(args.rate),
           "--key", KEY, "--run", run]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.duration * 4 + 60)
    return json.loads(out.stdout)


def start(kind: str, port: int, db_url: str | None, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_"))}
    if kind == "callstore":
        env.update({"DATABASE_URL": db_url or "", "ALOHUB_WEBHOOK_KEYS": KEY, "CALLSTORE_PORT": str(port),
                    "CALLSTORE_DATA_DIR": str(data_dir), "CALLSTORE_LOG_LEVEL": "WARNING"})
        cmd = [sys.executable, "-m", "callstore", "serve", "--role", "receiver"]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "ingest" / "targets.py"), kind, "--port", str(port)]
        if db_url:
            cmd += ["--database-url", db_url]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def stored_deliveries(url: str, run: str) -> int:
    conn = await asyncpg.connect(url)
    n = await conn.fetchval("SELECT coalesce(sum(deliveries), 0) FROM callstore.raw_events WHERE call_id LIKE $1", run + "-%")
    await conn.close()
    return int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", help="a PostgreSQL server to use (default: an embedded one, fsync on)")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=float, default=1000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    tmp.chmod(0o711)  # as root the server runs as callstore-pg, which must pass through
    server = None
    if args.database_url:
        server_url = args.database_url
    else:
        server = EmbeddedPostgres(tmp / "pg")
        server.ensure_started()
        server_url = server.superuser_url("postgres")
    results: dict[str, dict[str, object]] = {}
    try:
        urls = {
            "naive": asyncio.run(fresh_database(server_url, "bench_naive")),
            "callstore": asyncio.run(fresh_database(server_url, "bench_callstore")),
        }
        for kind in ("bare", "naive", "callstore"):
            port = free_port()
            proc = start(kind, port, urls.get(kind), tmp / kind)
            try:
                wait_port(port, proc)
                load(port, "max", argparse.Namespace(**{**vars(args), "duration": 2}), f"{kind}-warm")
                peak = load(port, "max", args, f"{kind}-max")
                steady = load(port, "rate", args, f"{kind}-rate")
                results[kind] = {"max": peak, "rate": steady}
                if kind == "callstore":
                    for run, res in (("callstore-max", peak), ("callstore-rate", steady)):
                        ok = int(res["statuses"].get("200", 0))  # type: ignore[union-attr]
                        stored = asyncio.run(stored_deliveries(urls["callstore"], run))
                        res["acknowledged_and_stored"] = stored >= ok
                        res["stored"] = stored
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        if server is not None:
            server.stop(mode="immediate")

    bare = float(results["bare"]["max"]["per_second"])  # type: ignore[index]
    naive = float(results["naive"]["max"]["per_second"])  # type: ignore[index]
    ours = float(results["callstore"]["max"]["per_second"])  # type: ignore[index]
    summary = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} vCPU, {platform.machine()}, Python {platform.python_version()}",
        "connections": args.connections, "duration_s": args.duration, "rate": args.rate,
        "results": results,
        "ratio_to_bare": round(ours / bare, 3),
        "ratio_to_naive": round(ours / naive, 2),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"ingest-{summary['date']}.json").write_text(json.dumps(summary, indent=2))
    print(f"| target | events/s (max, {args.connections} conns) | p50 ms | p99 ms | p50 ms @ {int(args.rate)}/s | p99 ms @ {int(args.rate)}/s |")
    print("|---|---|---|---|---|---|")
    for kind in ("bare", "naive", "callstore"):
        m, r = results[kind]["max"], results[kind]["rate"]
        print(f"| {kind} | {m['per_second']} | {m['p50_ms']} | {m['p99_ms']} | {r['p50_ms']} | {r['p99_ms']} |")  # type: ignore[index]
    print(f"\ncallstore / bare = {summary['ratio_to_bare']}, callstore / naive = {summary['ratio_to_naive']}")
    print(f"every 200 stored: {all(results['callstore'][m]['acknowledged_and_stored'] for m in ('max', 'rate'))}")  # type: ignore[index]


if __name__ == "__main__":
    main()
