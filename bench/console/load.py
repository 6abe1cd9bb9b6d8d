"""Load the reports benchmark's data set into a database that stays, for bench/console/run.py.

    .venv/bin/python bench/console/load.py [--url postgresql://postgres@127.0.0.1:5432/postgres] \
        [--database callstore_bench_console] [--calls 10000000]
    .venv/bin/python bench/console/load.py --drop      # when done

Creates (or replaces) the database on that server, migrates it, and loads
`--calls` calls with bench/reports/run.py's generator (50 queues plus
unassigned, 180 days, 90 % inbound), shifted so that the last call starts now:
the wallboard's "today" and the reports page's default last 7 days then have
data. Each call also gets a caller number (+84912000000 to +84912999999, ~10
calls per number at 10M), so that a phone search finds a few calls, and the 50
queues get names in the catalogue. Then every rollup is rebuilt as `callstore
report rebuild` does. Unlike bench/reports/run.py the database is kept: point
`callstore serve` at it with DATABASE_URL. Only for a throwaway server
(it drops a database of that name first).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.reports.run import DAYS, LOAD, QUEUES, with_db  # noqa: E402
from reports.agent_rollups import rebuild_agent_rollups  # noqa: E402
from reports.campaigns import rebuild_campaigns  # noqa: E402
from reports.rollups import rebuild_rollups  # noqa: E402
from store import migrate  # noqa: E402
from store.engine import async_url, create_engine  # noqa: E402
from store.settings import TenantSettings  # noqa: E402
from store.tenants import sync_tenants  # noqa: E402

DB = "callstore_bench_console"
CHUNK = 1_000_000

# The reports generator plus a caller number per call (E.164, as normalisation stores it).
_COLUMNS, _VALUES = "first_source)\nSELECT", "'webhook'\nFROM"
assert _COLUMNS in LOAD and _VALUES in LOAD, "bench/reports/run.py's LOAD changed shape"
LOAD_WITH_PHONES = LOAD.replace(_COLUMNS, "first_source, caller_number)\nSELECT").replace(
    _VALUES, "'webhook', '+84912' || lpad((i % 1000000)::text, 6, '0')\nFROM")

QUEUES_SQL = """INSERT INTO callstore.queues (tenant_id, queue_id, name, callin_number, callin_number_canonical)
SELECT 'default', q, 'Queue ' || q, '1900' || lpad(q::text, 4, '0'), '1900' || lpad(q::text, 4, '0')
FROM generate_series(1, $1::int) q"""


async def load(server_url: str, database: str, n_calls: int) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = with_db(server_url, database)
    engine = create_engine(url, pool_size=2)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as c:
            await sync_tenants(c, [TenantSettings("default")])
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(QUEUES_SQL, QUEUES)
            # The bulk load bypasses the per-statement rollup and campaign triggers; the rebuild follows.
            await conn.execute("ALTER TABLE callstore.calls DISABLE TRIGGER USER")
            end = datetime.now(timezone.utc).replace(microsecond=0)
            start = (end - timedelta(days=DAYS)).isoformat()
            t0 = time.perf_counter()
            for lo in range(0, n_calls, CHUNK):
                await conn.execute(LOAD_WITH_PHONES.format(start=start, days=DAYS), lo,
                                   min(lo + CHUNK, n_calls) - 1, QUEUES, n_calls)
                print(f"  loaded {min(lo + CHUNK, n_calls):,} calls ({time.perf_counter() - t0:.0f} s)", flush=True)
            await conn.execute("ALTER TABLE callstore.calls ENABLE TRIGGER USER")
            await conn.execute("VACUUM ANALYZE callstore.calls")
            print(f"load: {time.perf_counter() - t0:.0f} s ({start} to {end.isoformat()})", flush=True)
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    await rebuild(url)


async def rebuild(url: str) -> None:
    """What `callstore report rebuild` does, without the service's 60 s statement timeout:
    one statement of the agent rebuild reads every call (over a minute at 10M calls here)."""
    engine = create_async_engine(async_url(url), pool_size=1, connect_args={"command_timeout": None})
    try:
        async with engine.begin() as c:
            queues = await rebuild_rollups(c)
            agents = await rebuild_agent_rollups(c)
            campaigns = (await rebuild_campaigns(c)).seconds
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        print(f"rebuild: queue rollups {queues:.0f} s, agent rollups {agents:.0f} s, campaigns {campaigns:.0f} s",
              flush=True)
    finally:
        await engine.dispose()


async def drop(server_url: str, database: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="maintenance database URL of a throwaway server")
    parser.add_argument("--database", default=DB)
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--drop", action="store_true", help="drop the database and exit")
    parser.add_argument("--rebuild-only", action="store_true", help="only rebuild the rollups of a loaded database")
    args = parser.parse_args()
    if not args.database.replace("_", "").isalnum():
        print("bench: error: --database: letters, digits and _ only", file=sys.stderr)
        return 2
    if args.calls < 1:
        print("bench: error: --calls: must be at least 1", file=sys.stderr)
        return 2
    if args.drop:
        asyncio.run(drop(args.url, args.database))
    elif args.rebuild_only:
        asyncio.run(rebuild(with_db(args.url, args.database)))
    else:
        asyncio.run(load(args.url, args.database, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
