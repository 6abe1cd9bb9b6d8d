"""The growth curve: the same four measurements at 1M, 3M and 10M calls.

    .venv/bin/python bench/growth/run.py [--url postgresql://postgres@127.0.0.1:5432/postgres] \
        [--sizes 1000000,3000000,10000000] [--keep]

One run grows one database (`--database`, default callstore_bench_growth, on a
throwaway server: a database of that name is dropped first, and at the end
unless --keep): load to the first size, measure, grow to the next, measure...
so that every ratio to the first size comes from the same run.

The data: one tenant at a constant `--per-day` calls a day (10,000: 1M calls
are 100 days, 10M calls 1,000 days), so growing the database means a longer
history, as a service that keeps running sees it; the last 90 days look the
same at every size. 50 queues plus unassigned, 200 agents, 90 % inbound, a
caller number per call (one number per million calls repeats), and about two
raw events per call: the webhook's partial at the start and its final event at
the end, JSON shaped like Alohub's webhook. Calls are generated in SQL
(generate_series); the raw events in `raw_events_sql()`, written against the
live schema. Rollups (queues and agents) are rebuilt after each growth step.

Measured at each size (median and p95 of `--rounds` rounds):
  ingest    a real `callstore serve --role receiver` process, POST
            /webhooks/alohub from 127.0.0.1: `--events` events, half of them
            updates of existing calls of the last 90 days (lookups on the big
            indexes), half new calls (a partial and a final event each);
            events/s from the first request to the last answer, and every
            200 counted in the database afterwards;
  refresh   10,000 existing calls of the last 90 days changed (an UPDATE that
            fires the same triggers as the merge), then the rollup job's
            function until nothing is dirty (queue rollups; agent rollups
            apart);
  report    the queue report over 90 days, daily, all queues, as /api and
            `callstore report queues` compute it (reports.queries.queue_report);
  search    the call search of /api/calls (store/calls_query.py): the newest
            page, a phone number, an agent, a queue over the last 7 days.
Prints a markdown table (metric x size, value and ratio to the first size) and
writes it as JSON (--json). Takes long: about 10 minutes a million calls here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402

from bench.loadgen import one  # noqa: E402
from reports.agent_rollups import agent_refresh_job, rebuild_agent_rollups  # noqa: E402
from reports.queries import queue_report  # noqa: E402
from reports.rollups import rebuild_rollups, refresh_job  # noqa: E402
from store import migrate  # noqa: E402
from store.calls_query import CallSearch, search_calls  # noqa: E402
from store.engine import async_url, create_engine  # noqa: E402
from store.settings import Settings, TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402

DB = "callstore_bench_growth"
TENANT = "default"
ZONE = "Asia/Ho_Chi_Minh"  # the default tenant's zone; webhook times are local
QUEUES = 50
AGENTS = 200
KEY = "bench-growth-webhook-key"
CHUNK = 250_000
#: Order of callstore.calls' merged fields (store.merge.FIELDS): the rank of each.
RANKED = ("direction", "call_status", "hotline", "caller_number", "destination_number", "agent", "transaction_id",
          "started_at", "answered_at", "ended_at", "hangup_by", "total_seconds", "hold_seconds", "recording_url",
          "history_source", "object_id", "event_type")


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, ""))


# ---------------------------------------------------------------- the data

def calls_sql(layout: dict[str, bool], tenant: str = TENANT) -> str:
    """Calls $1..$2 (index i: 0 is the newest, started at $3; $4 calls a day) as
    a webhook-fed call's row after its final event. Returns the new rows."""
    # The rank of the event each value came from (store/merge.py): 2 x lifecycle, webhook.
    ranks = ", ".join(f"CASE WHEN {c} IS NULL THEN -1 ELSE rank END" for c in RANKED)
    raw_month = ", raw_month" if layout["calls_raw_month"] else ""
    raw_month_value = ", date_trunc('month', started_at AT TIME ZONE 'UTC')::date" if layout["calls_raw_month"] else ""
    return f"""
    INSERT INTO callstore.calls (tenant_id, call_id, direction, call_status, hotline, caller_number,
        destination_number, agent, transaction_id, started_at, answered_at, ended_at, hangup_by, total_seconds,
        hold_seconds, recording_url, object_id, event_type, queue_id, merge_ranks, seen_webhook, first_source,
        first_seen_at, updated_at{raw_month})
    SELECT tenant_id, call_id, direction, call_status, hotline, caller_number, destination_number, agent,
           transaction_id, started_at, answered_at, ended_at, hangup_by, total_seconds, hold_seconds, recording_url,
           object_id, event_type, queue_id, ARRAY[{ranks}]::smallint[], true, 'webhook', started_at,
           coalesce(ended_at, started_at){raw_month_value}
    FROM (
        SELECT '{tenant}' AS tenant_id, 'g' || i AS call_id, dir AS direction,
               CASE WHEN ans THEN 'answered' WHEN ended THEN 'noanswer' ELSE 'ringing' END AS call_status,
               CASE WHEN ended THEN 4 WHEN ans THEN 2 ELSE 0 END AS rank,
               CASE WHEN unassigned THEN '19009999' ELSE '1900' || lpad(q::text, 4, '0') END AS hotline,
               CASE WHEN dir = 'inbound' THEN '+84912' || lpad((i % 1000000)::text, 6, '0') ELSE '1900' || lpad(q::text, 4, '0') END AS caller_number,
               CASE WHEN dir = 'inbound' THEN '1900' || lpad(q::text, 4, '0') ELSE '+84912' || lpad((i % 1000000)::text, 6, '0') END AS destination_number,
               'agent' || (i % {AGENTS}) AS agent, 'T' || i AS transaction_id,
               s AS started_at,
               CASE WHEN ans THEN s + wait * interval '1 second' END AS answered_at,
               CASE WHEN ended THEN s + (wait + talk) * interval '1 second' END AS ended_at,
               CASE WHEN ended THEN CASE WHEN r6 < 0.9 THEN 'customer' ELSE 'system' END END AS hangup_by,
               CASE WHEN ended THEN wait + talk END AS total_seconds, hold AS hold_seconds,
               CASE WHEN ans AND ended THEN 'https://media.example/IPCCMedia/MP3Export.do?url=g' || i || '.mp3&source=ipcc' END AS recording_url,
               1 AS object_id, 'call' AS event_type, NULL::text AS history_source,
               CASE WHEN dir = 'inbound' AND NOT unassigned THEN q END AS queue_id
        FROM (
            SELECT i, date_trunc('second', $3::timestamptz - (i::float8 / $4) * interval '1 day') AS s,
                   CASE WHEN r1 < 0.9 THEN 'inbound' ELSE 'outbound' END AS dir,
                   r2 < 0.7 AS ans, floor(r3 * 60)::int AS wait, floor(r5 * 600)::int AS talk, r4 < 0.998 AS ended,
                   floor(r5 * 30)::int AS hold, r6, 1 + (i % {QUEUES}) AS q,
                   -- unassigned: a hotline no queue has (2 % of inbound calls)
                   r6 < 0.02 AS unassigned
            FROM (SELECT i, random() r1, random() r2, random() r3, random() r4, random() r5, random() r6
                  FROM generate_series($1::bigint, $2::bigint) i) x
        ) y
    ) z
    RETURNING tenant_id, call_id, direction, call_status, hotline, caller_number, destination_number, agent,
              transaction_id, started_at, answered_at, ended_at, hangup_by, total_seconds, hold_seconds,
              recording_url, object_id
    """


async def detect_layout(conn: asyncpg.Connection) -> dict[str, bool]:
    """What the live schema has: the raw-event load adapts to it (the layout changes
    with raw-event partitioning: a raw_month column on both tables, partitions)."""
    cols = {(r["table_name"], r["column_name"]): r for r in await conn.fetch(
        "SELECT table_name, column_name, column_default, is_generated FROM information_schema.columns "
        "WHERE table_schema = 'callstore' AND table_name IN ('calls', 'raw_events')")}

    def settable(table: str, column: str) -> bool:
        r = cols.get((table, column))
        return r is not None and r["is_generated"] != "ALWAYS"

    partitioned = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'callstore.raw_events'::regclass)")
    return {"calls_raw_month": settable("calls", "raw_month"), "raw_month": settable("raw_events", "raw_month"),
            "raw_id": ("raw_events", "id") in cols, "partitioned": bool(partitioned),
            "body": ("raw_events", "body") in cols}


def raw_events_sql(layout: dict[str, bool]) -> str:
    """The raw events of the calls in `new_calls` (a CTE of calls rows): the webhook's
    partial at the call's start and its latest event (at its end, or its answer for a
    call still going), JSON as Alohub sends it, through the columns the live layout has.
    Where raw events keep a `body` (bytea, store/raw_body.py), it is written as version 0
    (stored uncompressed: '\\x00' then the JSON text), which SQL alone can produce; the
    service's own writes are compressed (version 1), so bytes at rest measured on this
    load are an upper bound (bench/storage/raw_events.py measures the real ones)."""
    local = f"AT TIME ZONE '{ZONE}', 'YYYY-MM-DD HH24:MI:SS'"
    common = f"""'call_id', c.call_id, 'direction', c.direction, 'caller_number', c.caller_number,
        'destination_number', c.destination_number, 'hotline', c.hotline, 'objectId', c.object_id,
        'transactionID', c.transaction_id, 'eventType', 'call', 'starttime', to_char(c.started_at {local})"""
    partial = f"jsonb_strip_nulls(jsonb_build_object({common}, 'call_status', 'ringing'))"
    final = f"""jsonb_strip_nulls(jsonb_build_object({common}, 'call_status', c.call_status,
        'answertime', to_char(c.answered_at {local}), 'endtime', to_char(c.ended_at {local}),
        'hangup_by', c.hangup_by, 'total_duration', c.total_seconds::text, 'holding_duration', c.hold_seconds::text,
        'recording_url', c.recording_url, 'userName', c.agent))"""
    month = ", raw_month" if layout["raw_month"] else ""
    body_column, body_value = ("body", "'\\x00'::bytea || convert_to(e.p::text, 'UTF8')") if layout.get("body") \
        else ("payload", "e.p")
    month_value = ", date_trunc('month', c.started_at AT TIME ZONE 'UTC')::date" if layout["raw_month"] else ""
    return f"""
    INSERT INTO callstore.raw_events (tenant_id, call_id, source, body_sha256, {body_column}, flags, deliveries,
                                      received_at, last_received_at{month})
    SELECT c.tenant_id, c.call_id, 'webhook', sha256(convert_to(e.p::text, 'UTF8')), {body_value}, '{{}}', 1, e.r, e.r{month_value}
    FROM new_calls c
    CROSS JOIN LATERAL (VALUES ({partial}, c.started_at),
                               ({final}, coalesce(c.ended_at, c.answered_at, c.started_at + interval '1 second'))) e(p, r)
    """


async def ensure_raw_partitions(conn: asyncpg.Connection, layout: dict[str, bool], months: list[date],
                                tenant: str = TENANT) -> None:
    """On a partitioned raw_events, a partition for each of `months`: through the
    schema's own function when it has one, else under every range-partitioned
    table of the tree that has none starting on that month yet."""
    if not layout["partitioned"]:
        return
    if await conn.fetchval("SELECT to_regprocedure('callstore.raw_ensure_month(text, date)') IS NOT NULL"):
        # The service's own way (what its scheduled job does ahead of time).
        if await conn.fetchval("SELECT to_regprocedure('callstore.raw_ensure_tenant(text)') IS NOT NULL"):
            await conn.execute("SELECT callstore.raw_ensure_tenant($1)", tenant)
        for m in months:
            await conn.execute("SELECT callstore.raw_ensure_month($1, $2)", tenant, m)
        return
    parents = await conn.fetch(
        """SELECT t.relid::regclass::text AS name FROM pg_partition_tree('callstore.raw_events') t
           JOIN pg_partitioned_table p ON p.partrelid = t.relid WHERE p.partstrat = 'r'""")
    for parent in (r["name"] for r in parents):
        for m in months:
            covered = await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = $1::regclass
                     AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM (''' || $2 || '''%')""",
                parent, m.isoformat())
            if not covered:
                nxt = (m.replace(day=28) + timedelta(days=4)).replace(day=1)
                name = f"{parent.rsplit('.', 1)[-1].strip(chr(34))}_b{m:%Y%m}"
                await conn.execute(f'CREATE TABLE callstore."{name}" PARTITION OF {parent} '
                                   f"FOR VALUES FROM ('{m.isoformat()}') TO ('{nxt.isoformat()}')")


def months_between(a: datetime, b: datetime) -> list[date]:
    m, out = date(a.year, a.month, 1), []
    while m <= b.date():
        out.append(m)
        m = (m.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


async def prepare(conn: asyncpg.Connection, tenant: str = TENANT) -> None:
    """The tenant's queues, named, each with its call-in number (1900xxxx)."""
    await conn.execute(
        "INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number, callin_number_canonical) "
        "SELECT $1, q, 'Queue ' || q, '1900' || lpad(q::text, 4, '0'), '1900' || lpad(q::text, 4, '0') "
        "FROM generate_series(1, $2::int) q", tenant, QUEUES)


async def load_calls(conn: asyncpg.Connection, layout: dict[str, bool], lo: int, hi: int, anchor: datetime,
                     per_day: int, tenant: str = TENANT) -> None:
    """Calls lo..hi-1 with their raw events, in one statement (rollup triggers as the table has them)."""
    oldest = anchor - timedelta(days=(hi - 1) / per_day)
    await ensure_raw_partitions(conn, layout, months_between(oldest, anchor + timedelta(days=1)), tenant)
    await conn.execute(f"WITH new_calls AS ({calls_sql(layout, tenant)}) {raw_events_sql(layout)}",
                       lo, hi - 1, anchor, per_day)


async def grow(url: str, layout: dict[str, bool], lo: int, hi: int, anchor: datetime, per_day: int) -> None:
    """Add calls lo..hi-1 (and their raw events), then rebuild the rollups."""
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        # The bulk load bypasses the per-statement rollup triggers; a rebuild follows.
        await conn.execute("ALTER TABLE callstore.calls DISABLE TRIGGER USER")
        t0 = time.perf_counter()
        for a in range(lo, hi, CHUNK):
            b = min(a + CHUNK, hi)
            await load_calls(conn, layout, a, b, anchor, per_day)
            done, took = b - lo, time.perf_counter() - t0
            rate = done / took
            print(f"  loaded {b:,} calls with their raw events: {rate:,.0f} calls/s, "
                  f"ETA {(hi - b) / rate:.0f} s", flush=True)
        await conn.execute("ALTER TABLE callstore.calls ENABLE TRIGGER USER")
        t1 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE callstore.calls")
        await conn.execute("VACUUM ANALYZE callstore.raw_events")
        print(f"  vacuum analyze: {time.perf_counter() - t1:.0f} s", flush=True)
    finally:
        await conn.close()
    # The rebuild without the service's statement timeout (one agent statement reads every call).
    engine = create_async_engine(async_url(url), pool_size=1, connect_args={"command_timeout": None})
    try:
        async with engine.begin() as c:
            queues = await rebuild_rollups(c)
            agents = await rebuild_agent_rollups(c)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        await conn.execute("VACUUM ANALYZE callstore.queue_rollup_15m, callstore.queue_rollup_hourly, "
                           "callstore.queue_rollup_daily")
    finally:
        await conn.close()
    print(f"  rebuild: queue rollups {queues:.0f} s, agent rollups {agents:.0f} s", flush=True)


# ---------------------------------------------------------------- measurements

def stats(values: list[float], higher_is_better: bool = False) -> dict[str, float]:
    """Median and p95, the 95th-percentile worst run: for a rate, its 5th percentile."""
    s = sorted(values, reverse=higher_is_better)
    return {"median": statistics.median(s), "p95": s[min(len(s) - 1, round(0.95 * (len(s) - 1)))],
            "runs": len(s)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALOHUB_", "CALLSTORE_", "DATABASE_"))}
    env.update({"DATABASE_URL": url, "ALOHUB_WEBHOOK_KEYS": KEY, "CALLSTORE_PORT": str(port),
                "CALLSTORE_DATA_DIR": str(data_dir), "CALLSTORE_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen([sys.executable, "-m", "callstore", "serve", "--role", "receiver"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.time() + 60
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("receiver did not start within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def local(at: datetime | None) -> str | None:
    return at.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S") if at else None


async def webhook_bodies(conn: asyncpg.Connection, n_events: int, tag: str, existing: list[int]) -> tuple[list[bytes], list[str]]:
    """Half updates of existing calls (a later end than stored: the merge rewrites the
    row), half new calls (partial + final). Returns bodies (shuffled) and call ids."""
    rows = await conn.fetch(
        "SELECT * FROM callstore.calls WHERE tenant_id = $1 AND call_id = ANY($2::text[])",
        TENANT, [f"g{i}" for i in existing])
    bodies: list[bytes] = []
    ids: list[str] = []
    for r in rows:
        end = (r["ended_at"] or r["started_at"]) + timedelta(seconds=5)
        bodies.append(json.dumps({
            "call_id": r["call_id"], "call_status": r["call_status"], "direction": r["direction"],
            "caller_number": r["caller_number"], "destination_number": r["destination_number"],
            "hotline": r["hotline"], "starttime": local(r["started_at"]), "answertime": local(r["answered_at"]),
            "endtime": local(end), "hangup_by": "customer", "total_duration": str((r["total_seconds"] or 0) + 5),
            "holding_duration": str(r["hold_seconds"]), "recording_url": r["recording_url"], "objectId": 1,
            "transactionID": r["transaction_id"], "userName": r["agent"], "eventType": "call",
        }).encode())
        ids.append(r["call_id"])
    now = datetime.now(timezone.utc) - timedelta(minutes=10)
    for n in range((n_events - len(bodies)) // 2):
        cid, q = f"w{tag}-{n}", 1 + n % QUEUES
        base = {"call_id": cid, "direction": "inbound", "caller_number": f"0913{n % 1000000:06d}",
                "destination_number": f"1900{q:04d}", "hotline": f"1900{q:04d}",
                "starttime": local(now + timedelta(seconds=n % 300)), "objectId": 1, "transactionID": f"W{tag}{n}",
                "eventType": "call"}
        bodies.append(json.dumps({**base, "call_status": "ringing"}).encode())
        bodies.append(json.dumps({**base, "call_status": "answered",
                                  "answertime": local(now + timedelta(seconds=n % 300 + 8)),
                                  "endtime": local(now + timedelta(seconds=n % 300 + 190)), "hangup_by": "customer",
                                  "total_duration": "190", "holding_duration": "0", "userName": f"agent{n % AGENTS}",
                                  "recording_url": f"https://media.example/IPCCMedia/MP3Export.do?url={cid}.mp3"
                                  }).encode())
        ids.append(cid)
    random.Random(tag).shuffle(bodies)
    return bodies, ids


async def send_all(port: int, bodies: list[bytes], connections: int, timeout: float) -> tuple[float, dict[int, int]]:
    """POST every body once over `connections` keep-alive connections; seconds and statuses."""
    reqs = [(f"POST /webhooks/alohub HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {KEY}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    it = iter(reqs)
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for req in it:
                status = await one(reader, writer, req)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), timeout)
    return time.perf_counter() - t0, statuses


async def measure_ingest(url: str, size: int, args: argparse.Namespace, per_day: int, tmp: Path) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    rng = random.Random(size)
    recent = min(size, 90 * per_day)
    port = free_port()
    proc = start_receiver(url, port, tmp / f"receiver-{size}")
    rates, checks = [], []
    try:
        warm, _ = await webhook_bodies(conn, 2000, f"{size}warm", rng.sample(range(recent), min(1000, recent)))
        await send_all(port, warm, args.connections, 300)
        for rnd in range(args.rounds):
            tag = f"{size}r{rnd}"
            bodies, ids = await webhook_bodies(conn, args.events, tag, rng.sample(range(recent), min(args.events // 2, recent)))
            since = await conn.fetchval("SELECT now()")
            seconds, statuses = await send_all(port, bodies, args.connections, 600)
            ok = statuses.get(200, 0)
            stored = await conn.fetchval(
                "SELECT coalesce(sum(deliveries), 0) FROM callstore.raw_events "
                "WHERE tenant_id = $1 AND call_id = ANY($2::text[]) AND received_at >= $3", TENANT, ids, since)
            rates.append(len(bodies) / seconds)
            checks.append({"sent": len(bodies), "ok": ok, "stored": int(stored), "statuses": statuses})
            print(f"  ingest round {rnd + 1}: {len(bodies) / seconds:,.0f} events/s, {ok} x 200, {stored} stored",
                  flush=True)
    finally:
        stop(proc)
        await conn.close()
    return {"events_per_s": stats(rates, higher_is_better=True), "all_committed": all(c["ok"] == c["sent"] == c["stored"] for c in checks),
            "rounds": checks}


async def drain_dirty(engine: AsyncEngine, settings: Settings) -> None:
    for _ in range(20):
        await refresh_job(engine, settings)
        await agent_refresh_job(engine, settings)
        async with engine.connect() as c:
            left = (await c.exec_driver_sql(
                "SELECT (SELECT count(*) FROM callstore.rollup_dirty) + (SELECT count(*) FROM callstore.agent_dirty)"
            )).scalar()
        if not left:
            return
    raise RuntimeError("rollup_dirty still not empty after 20 refreshes")


async def measure_refresh(url: str, engine: AsyncEngine, settings: Settings, size: int, args: argparse.Namespace,
                          per_day: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    rng = random.Random(size + 1)
    recent = min(size, 90 * per_day)
    queue_s, agent_s, buckets = [], [], []
    try:
        await drain_dirty(engine, settings)
        for _ in range(args.rounds):
            ids = [f"g{i}" for i in rng.sample(range(recent), min(10_000, recent))]
            await conn.execute("UPDATE callstore.calls SET ended_at = coalesce(ended_at, started_at) + interval '3 seconds', "
                               "hangup_by = 'customer', updated_at = now() "
                               "WHERE tenant_id = $1 AND call_id = ANY($2::text[])", TENANT, ids)
            t0, n = time.perf_counter(), 0
            for _ in range(10):
                r = await refresh_job(engine, settings)
                n += r.buckets_15m
                if not await conn.fetchval("SELECT count(*) FROM callstore.rollup_dirty"):
                    break
            else:
                raise RuntimeError("rollup_dirty still not empty after 10 refreshes")
            queue_s.append(time.perf_counter() - t0)
            buckets.append(n)
            t0 = time.perf_counter()
            await agent_refresh_job(engine, settings)
            agent_s.append(time.perf_counter() - t0)
            print(f"  refresh after 10,000 changes: queues {queue_s[-1] * 1000:.0f} ms ({n} 15m buckets), "
                  f"agents {agent_s[-1] * 1000:.0f} ms", flush=True)
    finally:
        await conn.close()
    return {"queue_refresh_ms": stats([s * 1000 for s in queue_s]),
            "agent_refresh_ms": stats([s * 1000 for s in agent_s]), "buckets_15m": buckets}


async def timed(fn: Any, runs: int) -> dict[str, float]:
    await fn()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return stats(times)


async def measure_reads(engine: AsyncEngine, settings: Settings, anchor: datetime, runs: int) -> dict[str, Any]:
    today = anchor.astimezone(ZoneInfo(ZONE)).date()
    params = {"from": (today - timedelta(days=90)).isoformat(), "to": today.isoformat(), "interval": "day"}
    media, body = await queue_report(engine, settings, params)
    rows = len(json.loads(body)["rows"]) if media == "application/json" else None

    async def report() -> None:
        await queue_report(engine, settings, params)

    def search(q: CallSearch) -> Any:
        async def go() -> None:
            async with engine.connect() as c:
                await search_calls(c, q)
        return go

    week = anchor - timedelta(days=7)
    searches = {
        "search_newest_ms": CallSearch(tenant=TENANT),
        "search_phone_ms": CallSearch(tenant=TENANT, phones=("+84912000123", "0912000123")),
        "search_agent_ms": CallSearch(tenant=TENANT, agent="agent7"),
        "search_queue_7d_ms": CallSearch(tenant=TENANT, queue=7, start=week, end=anchor),
    }
    out: dict[str, Any] = {"report_90d_ms": await timed(report, runs), "report_rows": rows}
    for name, q in searches.items():
        out[name] = await timed(search(q), runs)
    return out


async def sizes_of(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {t: int(await conn.fetchval(f"SELECT pg_total_relation_size(c.oid) + coalesce(("
                                           f"SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(c.oid) "
                                           f"WHERE relid <> c.oid), 0) FROM pg_class c WHERE c.oid = '{t}'::regclass"))
                for t in ("callstore.calls", "callstore.raw_events")}
    finally:
        await conn.close()


# ---------------------------------------------------------------- the run

METRICS = (  # (label, path in a size's results, higher is better)
    ("webhook ingest, events/s", ("ingest", "events_per_s"), True),
    ("rollup refresh after 10k changes, ms", ("refresh", "queue_refresh_ms"), False),
    ("agent rollup refresh after 10k changes, ms", ("refresh", "agent_refresh_ms"), False),
    ("queue report, 90 days daily, all queues, ms", ("reads", "report_90d_ms"), False),
    ("search: newest page, ms", ("reads", "search_newest_ms"), False),
    ("search: a phone number, ms", ("reads", "search_phone_ms"), False),
    ("search: an agent, ms", ("reads", "search_agent_ms"), False),
    ("search: a queue, last 7 days, ms", ("reads", "search_queue_7d_ms"), False),
)


def table(results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    first = sizes[0]
    head = "| metric | " + " | ".join(f"{s / 1e6:g}M calls (median / p95)" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for label, (part, key), higher in METRICS:
        cells = []
        for s in sizes:
            v = results[s][part][key]
            base = results[first][part][key]["median"]
            worse = (base / v["median"] if higher else v["median"] / base) if v["median"] and base else float("nan")
            ratio = "" if s == first else f" ({worse:.2f}x)"
            fmt = "{:,.0f}" if v["median"] >= 100 else "{:.1f}"
            cells.append(f"{fmt.format(v['median'])} / {fmt.format(v['p95'])}{ratio}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| calls + raw events at rest, bytes per call | " + " | ".join(
        f"{(results[s]['bytes']['callstore.calls'] + results[s]['bytes']['callstore.raw_events']) / s:,.0f}"
        for s in sizes) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{args.database}"')
    url = with_db(args.url, args.database)
    settings = Settings(database_url=url)
    engine = create_engine(url, pool_size=2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-growth-"))
    results: dict[int, dict[str, Any]] = {}
    # Loaded calls end before now: a round's new deliveries are told apart by their receipt time.
    anchor = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as c:
            await sync_tenants(c, [TenantSettings(TENANT)])
        conn = await asyncpg.connect(url)
        try:
            await prepare(conn)
            layout = await detect_layout(conn)
        finally:
            await conn.close()
        print(f"schema: {layout}", flush=True)
        loaded = 0
        for size in sizes:
            t0 = time.perf_counter()
            print(f"growing to {size:,} calls", flush=True)
            await grow(url, layout, loaded, size, anchor, args.per_day)
            loaded = size
            load_s = time.perf_counter() - t0
            print(f"measuring at {size:,} calls", flush=True)
            res: dict[str, Any] = {"load_s": round(load_s), "bytes": await sizes_of(url)}
            res["reads"] = await measure_reads(engine, settings, anchor, args.read_runs)
            res["refresh"] = await measure_refresh(url, engine, settings, size, args, args.per_day)
            res["ingest"] = await measure_ingest(url, size, args, args.per_day, tmp)
            res["reads_after_ingest"] = await measure_reads(engine, settings, anchor, args.read_runs)
            results[size] = res
            print(table(results), flush=True)
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(summary(args, results), indent=2, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        await engine.dispose()
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        await admin.close()
    return summary(args, results)


def summary(args: argparse.Namespace, results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {"date": date.today().isoformat(),
            "machine": f"{os.cpu_count()} vCPU, {platform.machine()}, Python {platform.python_version()}",
            "per_day": args.per_day, "events": args.events, "rounds": args.rounds, "connections": args.connections,
            "sizes": {str(k): v for k, v in results.items()}, "table": table(results) if results else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="maintenance database URL of a throwaway server")
    parser.add_argument("--database", default=DB)
    parser.add_argument("--sizes", default="1000000,3000000,10000000", help="increasing call counts, comma-separated")
    parser.add_argument("--per-day", type=int, default=10_000, help="calls a day (the history grows backwards)")
    parser.add_argument("--events", type=int, default=20_000, help="webhook events per ingest round")
    parser.add_argument("--rounds", type=int, default=3, help="ingest and refresh rounds per size")
    parser.add_argument("--read-runs", type=int, default=9, help="runs of each report and search per size")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / f"growth-{date.today().isoformat()}.json"))
    parser.add_argument("--keep", action="store_true", help="leave the database for inspection")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        sizes = []
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 10_000:
        print("bench: error: --sizes: increasing call counts of at least 10000, comma-separated", file=sys.stderr)
        return 2
    if not args.database.replace("_", "").isalnum():
        print("bench: error: --database: letters, digits and _ only", file=sys.stderr)
        return 2
    for name in ("per_day", "events", "rounds", "read_runs", "connections"):
        if getattr(args, name) < 1:
            print(f"bench: error: --{name.replace('_', '-')}: must be at least 1", file=sys.stderr)
            return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(run(args, sizes))
    print(f"\n{out['table']}\n\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
