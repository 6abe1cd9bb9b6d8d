"""bench/storage: bytes per call at rest, after a realistic mix through the real write path.

    .venv/bin/python bench/storage/run.py [--url postgresql://postgres@127.0.0.1:5432/postgres | --embedded]
                                          [--calls 200000] [--revision REV] [--keep]

Creates the database `callstore_bench_storage` on the server of --url, or on
a fresh embedded server with --embedded (dropped at the end unless --keep),
migrates it to head (or to --revision, to measure an earlier schema with the
same code), then:

1. the webhook: every call's deliveries as Alohub sends them over the call's
   life (a ringing event, a mid-call `answered` event with empty end fields,
   the final event; some answered calls send a second partial with empty
   fields as Alohub's automatic-call webhook does), in event-time order,
   ~15 % of them delivered twice, written by two writers in micro-batches
   through `store.ingest.ingest` as the receiver's batcher does;
2. the history backfill of the same calls (searchCallV2 records) through
   `ingest(..., track_changes=True)` with the run, ledger and progress rows
   sync/backfill.py writes;
3. the three rollup refresh jobs every 5 s while loading, and once at the end;
4. VACUUM (not FULL) and ANALYZE, as autovacuum would.

Prints, as markdown, the size of every table and index of schema `callstore`
(a partitioned table counts all its partitions) and the bytes per call.
"""

from __future__ import annotations

import argparse
import hashlib
import asyncio
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reports import campaigns as campaign_rollups  # noqa: E402
from reports.agent_rollups import agent_refresh_job  # noqa: E402
from reports.rollups import refresh_job  # noqa: E402
from store import migrate  # noqa: E402
from store.embedded import EmbeddedPostgres  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.ingest import Delivery, ingest  # noqa: E402
from store.merge import parse_time  # noqa: E402
from store.settings import TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402
from sync import ledger  # noqa: E402
from sync.fake.history import DEFAULT_QUEUES, FakeCall, generate_calls, webhook_events  # noqa: E402
from sync.queues import store_catalogue  # noqa: E402
from sync.sources import history_payload  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "callstore_bench_storage"
MEDIA = "https://media.example"
TENANT = TenantSettings("default", media_url=MEDIA)
ZONE = TENANT.zone
REFRESH_EVERY_S = 5.0


def with_db(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- the deliveries ------------------------------------------------------------

def lifecycle_events(call: FakeCall, rng: random.Random) -> list[tuple[str, dict[str, object]]]:
    """(local event time, payload) of every webhook event of one call over its life."""
    events = webhook_events(call, MEDIA)
    final = events[-1]
    ringing = dict(final)
    ringing.update(call_status="ringing", answertime="", endtime="", hangup_by="", total_duration="",
                   holding_duration="", recording_url="")
    if call.direction == "INBOUND":
        ringing.update(userName="", destination_number="")
    out: list[tuple[str, dict[str, object]]] = [(call.starttime, ringing)]
    if call.answered:
        partial = events[0]
        out.append((call.answertime, partial))
        if rng.random() < 0.25:
            # The automatic-call webhook's partial: the same moment, more fields empty.
            s2 = dict(partial)
            s2.update(hotline="", holding_duration="", recording_url="")
            out.append((call.answertime, s2))
    if call.ended:
        out.append((call.endtime, final))
    return out


def webhook_stream(calls: list[FakeCall], duplicate: float, seed: int) -> list[tuple[str, bytes]]:
    """(call_id, body) of every delivery, in event-time order, some delivered twice."""
    rng = random.Random(seed)
    timed: list[tuple[str, int, str, bytes]] = []
    for n, call in enumerate(calls):
        for moment, payload in lifecycle_events(call, rng):
            body = orjson.dumps(payload)
            timed.append((moment, n, call.call_id, body))
            if rng.random() < duplicate:
                # Alohub retries a delivery it got no 200 for, a little later.
                timed.append((moment, n + rng.randint(1, 50), call.call_id, body))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [(cid, body) for _, _, cid, body in timed]


# -- the load ------------------------------------------------------------------

async def refresher(engine: Any, stop: asyncio.Event) -> None:
    """The scheduler's three rollup jobs, every 5 seconds, until `stop`."""
    while True:
        await refresh_all(engine)
        try:
            await asyncio.wait_for(stop.wait(), REFRESH_EVERY_S)
            return
        except asyncio.TimeoutError:
            pass


async def refresh_all(engine: Any) -> None:
    await refresh_job(engine, None)
    await agent_refresh_job(engine, None)
    await campaign_rollups.refresh_job(engine, None)


async def webhook_load(engine: Any, stream: list[tuple[str, bytes]], batch: int, writers: int) -> None:
    tenants = {TENANT.tenant_id: TENANT}
    position = 0
    done = 0
    started = time.monotonic()
    rng = random.Random(7)

    deferred: list[tuple[str, bytes]] = []

    def take() -> list[tuple[str, bytes]]:
        """The next micro-batch. The batcher takes whatever queued during the previous
        transaction: batches of varying size, and never two events of one call, which
        Alohub sends seconds or minutes apart (this load runs far faster than real time):
        a call's later event waits for the next batch, in order."""
        nonlocal position, deferred
        size = rng.randint(1, batch)
        chunk: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        waiting: list[tuple[str, bytes]] = []
        queued = deferred
        deferred = []
        for item in queued:
            (waiting if item[0] in seen or len(chunk) >= size else chunk).append(item)
            seen.add(item[0])
        while position < len(stream) and len(chunk) < size and len(waiting) < 10 * batch:
            item = stream[position]
            position += 1
            (waiting if item[0] in seen else chunk).append(item)
            seen.add(item[0])
        deferred = waiting
        return chunk

    async def writer() -> None:
        nonlocal done
        while position < len(stream) or deferred:
            chunk = take()
            now = datetime.now(timezone.utc)
            deliveries = []
            for call_id, body in chunk:
                payload = orjson.loads(body)
                deliveries.append(Delivery(TENANT.tenant_id, call_id, "webhook", payload, now,
                                           hashlib.sha256(body).digest(), body))
            async with engine.begin() as conn:
                await ingest(conn, deliveries, tenants)
            done += len(chunk)
            if done // 50_000 != (done - len(chunk)) // 50_000:
                rate = done / (time.monotonic() - started)
                log(f"webhook: {done:,}/{len(stream):,} deliveries ({rate:,.0f}/s)")

    await asyncio.gather(*(writer() for _ in range(writers)))


async def backfill_load(engine: Any, calls: list[FakeCall], batch: int, writers: int,
                        since: datetime, until: datetime) -> None:
    """What sync/backfill.py writes for pages of history records: ingest, ledger, run progress."""
    tenants = {TENANT.tenant_id: TENANT}
    async with engine.begin() as conn:
        run_id = await ledger.start_run(conn, TENANT.tenant_id, "manual", "searchCallV2", since, until)
    default_day = since.astimezone(ZONE).date()
    queue: asyncio.Queue[list[FakeCall] | None] = asyncio.Queue()
    for i in range(0, len(calls), batch):
        queue.put_nowait(calls[i:i + batch])
    for _ in range(writers):
        queue.put_nowait(None)
    done = 0
    started = time.monotonic()

    async def writer() -> None:
        nonlocal done
        while (chunk := await queue.get()) is not None:
            now = datetime.now(timezone.utc)
            tally = ledger.Tally()
            day_of: dict[str, date] = {}
            deliveries = []
            for call in chunk:
                record: dict[str, Any] = call.as_record()
                started_at = parse_time(record["starttime"], ZONE)
                day = started_at.astimezone(ZONE).date() if started_at else default_day
                day_of[call.call_id] = day
                tally.record(day)
                deliveries.append(Delivery(TENANT.tenant_id, call.call_id, "history",
                                           history_payload(record, MEDIA), now))
            async with engine.begin() as conn:
                result = await ingest(conn, deliveries, tenants, track_changes=True)
                tally.changes(result.changes, day_of, default_day)
                await ledger.add_to_ledger(conn, run_id, TENANT.tenant_id, tally)
                await ledger.progress_run(conn, run_id, TENANT.tenant_id, len(chunk) // 100 + 1, len(chunk), None)
            done += len(chunk)
            if done // 50_000 != (done - len(chunk)) // 50_000:
                log(f"backfill: {done:,}/{len(calls):,} records ({done / (time.monotonic() - started):,.0f}/s)")

    await asyncio.gather(*(writer() for _ in range(writers)))
    async with engine.begin() as conn:
        await ledger.finish_run(conn, run_id, TENANT.tenant_id, "ok")


# -- the measurement -------------------------------------------------------------

SIZES = """
WITH rel AS (
    SELECT c.oid, coalesce(pg_partition_root(c.oid), c.oid) AS root, c.relkind, c.reltoastrelid
    FROM pg_class c
), tables AS (
    SELECT t.oid, t.relname FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'callstore' AND t.relkind IN ('r', 'p') AND NOT t.relispartition
)
SELECT t.relname AS name, NULL::text AS index,
       coalesce(sum(pg_relation_size(r.oid, 'main')), 0)::bigint AS heap,
       coalesce(sum(pg_relation_size(r.oid, 'fsm') + pg_relation_size(r.oid, 'vm')), 0)::bigint AS maps,
       coalesce(sum(CASE WHEN r.reltoastrelid <> 0 THEN pg_total_relation_size(r.reltoastrelid) END), 0)::bigint
           AS toast
FROM tables t JOIN rel r ON r.root = t.oid AND r.relkind = 'r'
GROUP BY t.relname
UNION ALL
SELECT t.relname, i.relname, sum(pg_relation_size(r.oid))::bigint, 0, 0
FROM tables t
JOIN pg_index x ON x.indrelid = t.oid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN rel r ON r.root = x.indexrelid AND r.relkind = 'i'
GROUP BY t.relname, i.relname
ORDER BY 1, 2 NULLS FIRST
"""


async def measure(url: str) -> tuple[list[asyncpg.Record], dict[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        # What the load left, then what VACUUM leaves: between two autovacuums of a
        # large table the dead row versions of non-HOT updates stay, HOT ones are
        # pruned as the pages are used.
        unvacuumed = await conn.fetch(SIZES)
        log("VACUUM ANALYZE")
        await conn.execute("VACUUM (ANALYZE) ")
        await asyncio.sleep(1.0)  # the writers' statistics are flushed within a second
        rows = await conn.fetch(SIZES)
        stats = await conn.fetchrow(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE schemaname = 'callstore' AND relname = 'calls'")
        counts = {
            "calls": await conn.fetchval("SELECT count(*) FROM callstore.calls"),
            "raw_events": await conn.fetchval("SELECT count(*) FROM callstore.raw_events"),
            "deliveries": await conn.fetchval("SELECT sum(deliveries) FROM callstore.raw_events"),
            "inserts": stats["n_tup_ins"], "updates": stats["n_tup_upd"], "hot": stats["n_tup_hot_upd"],
            "server": await conn.fetchval("SHOW server_version"),
            "toast_compression": await conn.fetchval("SHOW default_toast_compression"),
            "unvacuumed": {name: sum(r["heap"] + r["maps"] + r["toast"] for r in unvacuumed if r["name"] == name)
                           for name in ("calls", "raw_events")},
            "unvacuumed_all": sum(r["heap"] + r["maps"] + r["toast"] for r in unvacuumed),
        }
        return rows, counts
    finally:
        await conn.close()


def kb(n: int) -> str:
    return f"{n / 1024:,.0f}"


def report(rows: list[asyncpg.Record], counts: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    n = counts["calls"]
    tables: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = tables.setdefault(r["name"], {"heap": 0, "toast": 0, "indexes": {}})
        if r["index"] is None:
            t["heap"] = r["heap"] + r["maps"]
            t["toast"] = r["toast"]
        else:
            t["indexes"][r["index"]] = r["heap"]
    total = lambda t: t["heap"] + t["toast"] + sum(t["indexes"].values())  # noqa: E731
    everything = sum(total(t) for t in tables.values())
    lines = [
        f"Machine: {os.cpu_count()} vCPU, {platform.machine()}, PostgreSQL {counts['server']}"
        f" (default_toast_compression {counts['toast_compression']}); {date.today().isoformat()};"
        f" `bench/storage/run.py --calls {args.calls}"
        f"{' --embedded' if args.embedded else ''}{'' if args.revision == 'heads' else ' --revision ' + args.revision}"
        f"{f' --fillfactor {args.fillfactor}' if args.fillfactor else ''}`"
        f" ({seconds:,.0f} s).",
        "",
        f"{n:,} calls; {counts['deliveries']:,} deliveries kept as {counts['raw_events']:,} raw events;"
        f" calls: {counts['inserts']:,} inserts, {counts['updates']:,} updates of which"
        f" {counts['hot']:,} HOT ({100 * counts['hot'] / max(1, counts['updates']):.0f} %).",
        "",
        "| table / index | heap KB | TOAST KB | indexes KB | total KB | bytes per call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in sorted(tables.items(), key=lambda kv: -total(kv[1])):
        if t["heap"] == 0:
            continue
        lines.append(f"| **{name}** | {kb(t['heap'])} | {kb(t['toast'])} | {kb(sum(t['indexes'].values()))}"
                     f" | {kb(total(t))} | {total(t) / n:,.0f} |")
        if name in ("calls", "raw_events") or total(t) / n >= 20:
            for index, size in sorted(t["indexes"].items(), key=lambda kv: -kv[1]):
                lines.append(f"| &nbsp;&nbsp;{index} | | | {kb(size)} | | {size / n:,.0f} |")
    empty = sorted(name for name, t in tables.items() if t["heap"] == 0)
    others = everything - sum(total(tables[k]) for k in ("calls", "raw_events") if k in tables)
    lines += [
        "",
        "| bytes per call | |",
        "|---|---:|",
        f"| raw_events (all partitions, with TOAST and indexes) | {total(tables['raw_events']) / n:,.0f} |",
        f"| calls (with TOAST and indexes) | {total(tables['calls']) / n:,.0f} |",
        f"| every other table | {others / n:,.0f} |",
        f"| **all of schema callstore** | **{everything / n:,.0f}** |",
        f"| before the VACUUM: calls / raw_events / all | {counts['unvacuumed']['calls'] / n:,.0f}"
        f" / {counts['unvacuumed']['raw_events'] / n:,.0f} / {counts['unvacuumed_all'] / n:,.0f} |",
        "",
        f"Empty tables: {', '.join(empty)}." if empty else "",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    url = with_db(args.url, args.database)
    t0 = time.monotonic()
    try:
        engine = create_engine(url, pool_size=args.writers + 2)
        try:
            await migrate.upgrade(engine, args.revision)
            async with engine.begin() as conn:
                if args.fillfactor:
                    await conn.exec_driver_sql(f"ALTER TABLE callstore.calls SET (fillfactor = {args.fillfactor:d})")
                await sync_tenants(conn, [TENANT])
                await store_catalogue(conn, TENANT, [q.to_record() for q in DEFAULT_QUEUES], datetime.now(timezone.utc))
            # 50,000 calls a day, a large contact center's day: 200k calls span four days.
            days = max(1, args.calls // 50_000)
            since = datetime(2026, 9, 1, tzinfo=ZONE)
            until = since + timedelta(days=days)
            log(f"generating {args.calls:,} calls over {days} days")
            calls = generate_calls(args.calls, seed=args.seed, start=since, end=until, tz=TENANT.timezone)
            stream = webhook_stream(calls, args.duplicates, args.seed)
            log(f"{len(stream):,} webhook deliveries")
            stop = asyncio.Event()
            jobs = asyncio.create_task(refresher(engine, stop))
            await webhook_load(engine, stream, args.batch, args.writers)
            del stream
            await backfill_load(engine, calls, args.history_batch, args.writers, since, until)
            stop.set()
            await jobs
            await refresh_all(engine)
        finally:
            await engine.dispose()
        rows, counts = await measure(url)
        print(report(rows, counts, args, time.monotonic() - t0), flush=True)
    finally:
        if not args.keep:
            admin = await asyncpg.connect(args.url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=DEFAULT_URL, help="a server on which databases may be created")
    ap.add_argument("--database", default=DB_NAME)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--duplicates", type=float, default=0.15, help="share of deliveries sent twice")
    ap.add_argument("--batch", type=int, default=200, help="largest webhook micro-batch")
    ap.add_argument("--history-batch", type=int, default=5000, help="records per backfill write")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--revision", default="heads", help="migrate to this revision (default: the latest)")
    ap.add_argument("--fillfactor", type=int, choices=range(10, 101), metavar="10-100",
                    help="try another fillfactor for calls (default: the schema's)")
    ap.add_argument("--embedded", action="store_true", help="on a fresh embedded server instead of --url")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()
    if not args.embedded:
        asyncio.run(run(args))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    tmp.chmod(0o711)  # as root the server runs as callstore-pg, which must pass through
    server = EmbeddedPostgres(tmp / "pg")
    try:
        server.ensure_started()
        args.url = server.superuser_url("postgres")
        asyncio.run(run(args))
        if args.keep:
            log(f"kept: database {args.database} on the embedded server on port {server.port}"
                f" (stop it with pg_ctl -D {server.pgdata} stop)")
    finally:
        if not args.keep:
            server.stop(mode="fast")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
