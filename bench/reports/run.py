"""Benchmark of the queue rollups (issue #4): 10M calls over 180 days, 50 queues.

    .venv/bin/python bench/reports/run.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--calls 10000000]

Runs in a throwaway database: with --url, a database `callstore_bench_reports`
is created (and dropped at the end) on that server; without it, an embedded
server in a temporary directory. Prints the figures recorded in
docs/benchmarks.md (## reports). Takes several minutes (the load).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncpg  # noqa: E402

from reports.rollups import rebuild_rollups, refresh_rollups  # noqa: E402
from store import migrate  # noqa: E402
from store.embedded import EmbeddedPostgres  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.settings import TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402

DB = "callstore_bench_reports"
START = "2026-05-27 00:00:00+07"  # 180 days up to 2026-11-23
DAYS = 180
QUEUES = 50

LOAD = """
INSERT INTO callstore.calls (tenant_id, call_id, direction, call_status, started_at, answered_at, ended_at,
                             hangup_by, queue_id, agent, hold_seconds, first_source)
SELECT 'default', 'b' || i,
       CASE WHEN r1 < 0.9 THEN 'inbound' ELSE 'outbound' END,
       CASE WHEN r2 < 0.7 THEN 'answered' ELSE 'noanswer' END,
       s,
       CASE WHEN r2 < 0.7 THEN s + floor(r3 * 60) * interval '1 second' END,
       CASE WHEN r4 < 0.998 THEN s + floor(r3 * 60 + r5 * 600) * interval '1 second' END,
       CASE WHEN r2 < 0.9 THEN 'customer' ELSE 'system' END,
       CASE WHEN r6 < 0.02 THEN NULL ELSE 1 + i % $3 END,
       'agent' || (i % 200), floor(r5 * 30)::int, 'webhook'
FROM (SELECT i, timestamptz '{start}' + (i::float8 / $4) * interval '{days} days' AS s,
             random() r1, random() r2, random() r3, random() r4, random() r5, random() r6
      FROM generate_series($1::bigint, $2::bigint) i) x
"""

VIEW_DAILY = """SELECT * FROM analytics.queue_stats_daily
WHERE tenant_id = 'default' AND bucket_start >= $1 AND bucket_start < $2 ORDER BY queue_id, bucket_start"""
VIEW_15M = """SELECT * FROM analytics.queue_stats_15m
WHERE tenant_id = 'default' AND bucket_start >= $1 AND bucket_start < $2 ORDER BY queue_id, bucket_start"""
# The same figures without rollups: a plain GROUP BY over the per-call view.
PLAIN = """SELECT queue_id, callstore.{fn}(started_at, 'Asia/Ho_Chi_Minh') AS b, count(*) AS offered,
  count(*) FILTER (WHERE outcome = 'answered') AS answered,
  count(*) FILTER (WHERE outcome IN ('abandoned', 'short_abandoned')) AS abandoned,
  count(*) FILTER (WHERE outcome = 'short_abandoned') AS short_abandoned,
  count(*) FILTER (WHERE outcome = 'unanswered_other') AS unanswered_other,
  count(*) FILTER (WHERE outcome = 'in_progress') AS in_progress,
  count(*) FILTER (WHERE answered_within_sla)::float8
      / NULLIF(count(*) FILTER (WHERE outcome IN ('answered', 'abandoned', 'unanswered_other')), 0) AS service_level,
  avg(wait_seconds) FILTER (WHERE outcome = 'answered') AS asa, avg(talk_seconds) FILTER (WHERE outcome = 'answered') AS aht,
  max(wait_seconds) FILTER (WHERE outcome IN ('answered', 'abandoned', 'short_abandoned')) AS max_wait
FROM analytics.calls WHERE tenant_id = 'default' AND direction = 'inbound' AND started_at >= $1 AND started_at < $2
GROUP BY 1, 2 ORDER BY 1, 2"""


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, ""))


async def server_ms(conn: asyncpg.Connection, sql: str, *args: object) -> float:
    """Execution time inside the server (no transfer, no client decoding), median of 3."""
    times = []
    for _ in range(3):
        plan = await conn.fetch("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, *args)
        times.append(__import__("json").loads(plan[0][0])[0]["Execution Time"])
    return statistics.median(times)


async def timed(conn: asyncpg.Connection, sql: str, *args: object, runs: int = 5) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        n = len(await conn.fetch(sql, *args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


async def bench(server_url: str, n_calls: int, keep: bool = False) -> None:
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB}"')
    url = with_db(server_url, DB)
    engine = create_engine(url, pool_size=2)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as c:
            await sync_tenants(c, [TenantSettings("default")])
        conn = await asyncpg.connect(url)
        # The bulk load bypasses the dirty-key trigger; a rebuild follows.
        await conn.execute("ALTER TABLE callstore.calls DISABLE TRIGGER calls_rollup_insert")
        t0 = time.perf_counter()
        chunk = 1_000_000
        for lo in range(0, n_calls, chunk):
            await conn.execute(LOAD.format(start=START, days=DAYS), lo, min(lo + chunk, n_calls) - 1, QUEUES, n_calls)
            print(f"  loaded {min(lo + chunk, n_calls):,} calls ({time.perf_counter() - t0:.0f} s)", flush=True)
        await conn.execute("ALTER TABLE callstore.calls ENABLE TRIGGER calls_rollup_insert")
        await conn.execute("VACUUM ANALYZE callstore.calls")
        print(f"load: {time.perf_counter() - t0:.0f} s")
        async with engine.begin() as c:
            seconds = await rebuild_rollups(c)
        await conn.execute("VACUUM ANALYZE callstore.queue_rollup_15m, callstore.queue_rollup_hourly, callstore.queue_rollup_daily")
        print(f"rebuild (all rollups from 10M calls): {seconds:.1f} s")

        end = await conn.fetchval(f"SELECT timestamptz '{START}' + interval '{DAYS} days'")
        import datetime as dt
        d90, d7 = end - dt.timedelta(days=90), end - dt.timedelta(days=7)
        v_daily, n_daily = await timed(conn, VIEW_DAILY, d90, end)
        v_15m, n_15m = await timed(conn, VIEW_15M, d7, end)
        p_daily, pn_daily = await timed(conn, PLAIN.format(fn="bucket_day"), d90, end, runs=3)
        p_15m, pn_15m = await timed(conn, PLAIN.format(fn="bucket_15m"), d7, end, runs=3)
        print(f"(a) view 90 days daily, all queues: {v_daily * 1000:.1f} ms ({n_daily} rows) fetched; "
              f"{await server_ms(conn, VIEW_DAILY, d90, end):.1f} ms in the server")
        print(f"(a) view 7 days 15m, all queues:    {v_15m * 1000:.1f} ms ({n_15m} rows) fetched; "
              f"{await server_ms(conn, VIEW_15M, d7, end):.1f} ms in the server")
        q15 = VIEW_15M.replace("tenant_id = 'default'", "tenant_id = 'default' AND queue_id = 7")
        v_q15, n_q15 = await timed(conn, q15, d7, end)
        print(f"(a) view 7 days 15m, one queue:     {v_q15 * 1000:.1f} ms ({n_q15} rows) fetched")
        print(f"(b) plain GROUP BY 90 days daily:  {p_daily * 1000:.0f} ms ({pn_daily} rows) -> view is {p_daily / v_daily:.0f}x faster")
        print(f"(b) plain GROUP BY 7 days 15m:     {p_15m * 1000:.0f} ms ({pn_15m} rows) -> view is {p_15m / v_15m:.0f}x faster")

        # (c) maintenance: 10,000 new calls (the last day), then 10,000 changed calls spread over the history.
        t0 = time.perf_counter()
        await conn.execute(LOAD.format(start=str(end - dt.timedelta(days=1)), days=1).replace("'b' || i", "'n' || i"),
                           0, 9_999, QUEUES, 10_000)
        insert_s = time.perf_counter() - t0
        dirty = await conn.fetchval("SELECT count(*) FROM callstore.rollup_dirty")
        async with engine.begin() as c:
            r = await refresh_rollups(c)
        print(f"(c) insert 10,000 new calls: {insert_s * 1000:.0f} ms incl. trigger ({dirty} dirty keys); "
              f"refresh {r.seconds * 1000:.0f} ms ({r.buckets_15m} 15m buckets)")

        ids = [f"b{i}" for i in range(0, n_calls, n_calls // 10_000)][:10_000]
        t0 = time.perf_counter()
        await conn.execute("UPDATE callstore.calls SET ended_at = ended_at + interval '3 seconds', hangup_by = 'customer' "
                           "WHERE tenant_id = 'default' AND call_id = ANY($1::text[])", ids)
        update_s = time.perf_counter() - t0
        async with engine.begin() as c:
            r = await refresh_rollups(c)
        print(f"(c) change 10,000 calls over 180 days: update {update_s * 1000:.0f} ms incl. trigger; "
              f"refresh {r.seconds * 1000:.0f} ms ({r.buckets_15m} 15m buckets)")

        ids = [f"b{i}" for i in range(7, n_calls, n_calls // 10_000)][:10_000]
        await conn.execute("UPDATE callstore.calls SET queue_id = 1 + (queue_id % 50) "
                           "WHERE tenant_id = 'default' AND call_id = ANY($1::text[])", ids)
        async with engine.begin() as c:
            r = await refresh_rollups(c)
        print(f"(c) re-attribute 10,000 calls to another queue: refresh {r.seconds * 1000:.0f} ms "
              f"({r.buckets_15m} 15m buckets, old and new)")
        await conn.close()
    finally:
        await engine.dispose()
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="maintenance database URL of a throwaway server (default: embedded)")
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the database for inspection (--url only)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(bench(args.url, args.calls, args.keep))
        return
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # as root the server runs as callstore-pg, which must pass through
        server = EmbeddedPostgres(Path(tmp), unsafe_fast=True)
        server.ensure_started()
        try:
            asyncio.run(bench(server.superuser_url("postgres"), args.calls))
        finally:
            server.stop(mode="immediate")


if __name__ == "__main__":
    main()
