"""bench/storage/raw_events.py: bytes of raw events at rest, at revision 0013 and at head.

Fills two databases on a PostgreSQL server with the same realistic mix (webhook
partials and finals, 10 % delivered twice, the history record of 80 % of the
calls, received over two months): one at revision 0013 with the write path of
that version (tests/store/ingest_0013.py: jsonb payloads), one at head with the
current one (partitioned, bodies packed by store/raw_body.py).
Prints bytes per raw event and per call of `callstore.raw_events` (tables,
indexes and TOAST; the whole partition tree at head), then times the upgrade of
the first database to head. Also prints `callstore.calls` (with its indexes)
per call, for the whole of a call at rest.

    .venv/bin/python bench/storage/raw_events.py --database-url postgresql://postgres@127.0.0.1:5432/postgres [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from store import migrate, raw_partitions  # noqa: E402
from store.engine import create_engine  # noqa: E402
from store.ingest import Delivery, ingest  # noqa: E402
from store.settings import TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402
from tests.store import ingest_0013  # noqa: E402
from tests.store.raw_mix import deliveries, utc  # noqa: E402

TENANTS = {"default": TenantSettings("default")}
SIZE = """
    SELECT coalesce(sum(pg_total_relation_size(r.relid)), 0), (SELECT count(*) FROM callstore.raw_events),
           (SELECT count(*) FROM callstore.calls), pg_total_relation_size('callstore.calls')
    FROM pg_partition_tree('callstore.raw_events') r
"""


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def fill(url: str, revision: str, calls: int) -> tuple[int, int, int, int]:
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine, revision)
        old = revision != "heads"
        async with engine.begin() as conn:
            await sync_tenants(conn, list(TENANTS.values()))
            if not old:  # as `callstore serve` does at start
                await raw_partitions.ensure(conn, list(TENANTS), utc(2026, 10, 15), raw_partitions.Maintenance())
        mix = deliveries(ingest_0013.Delivery if old else Delivery, "default", calls, seed=7,
                         first=utc(2026, 10, 15), days=45)
        write = ingest_0013.ingest if old else ingest
        started = time.perf_counter()
        for i in range(0, len(mix), 200):
            async with engine.begin() as conn:
                await write(conn, mix[i:i + 200], TENANTS)
        print(f"{revision}: ingest() of {len(mix)} deliveries in batches of 200, one writer: "
              f"{len(mix) / (time.perf_counter() - started):.0f} deliveries/s")
        raw = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await raw.execute("VACUUM ANALYZE")
            size, events, ncalls, calls_size = await raw.fetchrow(SIZE.replace(
                "pg_partition_tree('callstore.raw_events') r",
                "pg_partition_tree('callstore.raw_events') r" if not old else
                "(SELECT 'callstore.raw_events'::regclass AS relid) r"))
            return int(size), events, ncalls, int(calls_size)
        finally:
            await raw.close()
    finally:
        await engine.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    admin = await asyncpg.connect(args.database_url)
    names = [f"partitions_bench_raw_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        for n in names:
            await admin.execute(f'CREATE DATABASE "{n}"')
        before = await fill(with_db(args.database_url, names[0]), "0013", args.calls)
        after = await fill(with_db(args.database_url, names[1]), "heads", args.calls)
        for label, (size, events, ncalls, calls_size) in (("0013 (one table)", before), ("head", after)):
            print(f"{label}: {events} raw events, {ncalls} calls, {size / 1e6:.1f} MB: "
                  f"{size / events:.0f} B per raw event, {size / ncalls:.0f} B per call; "
                  f"callstore.calls {calls_size / ncalls:.0f} B per call")
        engine = create_engine(with_db(args.database_url, names[0]), pool_size=1)
        try:
            started = time.perf_counter()
            await migrate.upgrade(engine)
            print(f"upgrade 0013 -> head of {before[1]} raw events: {time.perf_counter() - started:.1f} s")
        finally:
            await engine.dispose()
    finally:
        for n in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
