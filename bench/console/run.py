"""Server time of each console page, as the server itself measures it.

    CONSOLE_PASSWORD=... .venv/bin/python bench/console/run.py --url http://127.0.0.1:8080 --user lan \
        [--password-env CONSOLE_PASSWORD] [--rounds 30] [--call CALL_ID] \
        [--database-url postgresql://postgres@127.0.0.1:5432/callstore_bench_console]

Logs in to a running `callstore serve` as a user (create one with `callstore
users create`), requests every page `--rounds` times and prints the median and
95th percentile of its `Server-Timing: app;dur=` header (the time from the
request reaching the console to the response being ready, without network or
browser), and whether the median and the p95 are under 100 ms. Point it at a
server loaded with the console's data set (bench/console/load.py: the reports
benchmark's 10M calls, kept) to check the 100 ms target on 10M calls.

With --database-url (the server's database, read by a superuser or a member of
pg_read_all_stats), it also prints how many rows of callstore.calls each
request read, from PostgreSQL's table statistics (sequential and index
fetches): a page that reads rollups reads few or none, a page that scans calls
reads many. The statistics count every backend, so the server's own jobs
add a little (run nothing else on that database meanwhile); a busy backend
reports them up to 10 s late, hence the pause before each reading.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from datetime import date, timedelta

import httpx

TARGET_MS = 100.0
PAGES = [
    "/ui/", "/ui/wallboard/tiles", "/ui/reports", "/ui/reports?interval=hour", "/ui/reports?interval=15m",
    "/ui/reports?interval=15m&queue=7", "/ui/calls", "/ui/calls?phone=0912345678", "/ui/calls?phone=%2B84912345678",
    "/ui/calls?agent=agent7", "/ui/calls?queue=7", "/ui/calls?direction=outbound", "/ui/calls?outcome=abandoned",
    "/ui/calls?recording=yes", "/ui/calls?agent=nobody", "/ui/alerts", "/ui/audit",
]


def range_page(days_back: int = 90) -> str:
    """A day of calls some months back (the data set ends today)."""
    day = date.today() - timedelta(days=days_back)
    return f"/ui/calls?from={day.isoformat()}&to={(day + timedelta(days=1)).isoformat()}"
_CALLS_READ = """SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
FROM pg_stat_user_tables WHERE schemaname = 'callstore' AND relname = 'calls'"""


def server_ms(response: httpx.Response) -> float:
    found = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if found is None:
        raise SystemExit(f"{response.url}: no Server-Timing header (status {response.status_code})")
    return float(found.group(1))


class CallsRead:
    """Rows of callstore.calls read so far, by every backend, as the statistics say."""

    def __init__(self, url: str) -> None:
        import asyncpg  # only this option needs it

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))

    def now(self) -> int:
        # A backend that reported less than a second ago reports again after 10 s idle.
        time.sleep(11)
        value = self.loop.run_until_complete(self.conn.fetchval(_CALLS_READ))
        self.loop.run_until_complete(self.conn.execute("SELECT pg_stat_clear_snapshot()"))
        return int(value or 0)

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", default="CONSOLE_PASSWORD")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--call", help="a call id whose page to time too")
    p.add_argument("--database-url", help="the server's database: count the calls rows each request reads")
    p.add_argument("--page", action="append", help="time only this page (repeatable; default: every page)")
    args = p.parse_args()
    password = os.environ.get(args.password_env)
    if not password:
        print(f"bench: error: --password-env: {args.password_env} is not set", file=sys.stderr)
        return 2
    if not 1 <= args.rounds <= 1000:
        print("bench: error: --rounds: must be between 1 and 1000", file=sys.stderr)
        return 2
    pages = args.page or PAGES + [range_page()] + ([f"/ui/calls/{args.call}"] if args.call else [])
    stats = CallsRead(args.database_url) if args.database_url else None
    try:
        with httpx.Client(base_url=args.url, timeout=60) as c:
            form = c.get("/ui/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf is not None
            r = c.post("/ui/login", data={"username": args.user, "password": password, "csrf": csrf.group(1)})
            if r.status_code != 303:
                print(f"bench: error: login failed with HTTP {r.status_code}", file=sys.stderr)
                return 1
            print(f"{'page':<44} {'median ms':>10} {'p95 ms':>8} {'< 100 ms':>9}"
                  + (f" {'calls rows/request':>19}" if stats else ""), flush=True)
            before = stats.now() if stats else 0
            for page in pages:
                first = c.get(page)  # warm up (templates compiled, connections open)
                if first.status_code != 200:
                    print(f"bench: error: {page}: HTTP {first.status_code}", file=sys.stderr)
                    return 1
                times = sorted(server_ms(c.get(page)) for _ in range(args.rounds))
                # The warm-up reads what every round reads: it counts as one more request.
                after = stats.now() if stats else 0
                read, before = (after - before) / (args.rounds + 1), after
                median, p95 = statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]
                meets = "yes" if p95 < TARGET_MS else "median" if median < TARGET_MS else "no"
                print(f"{page:<44} {median:>10.1f} {p95:>8.1f} {meets:>9}" + (f" {read:>19,.0f}" if stats else ""),
                      flush=True)
    finally:
        if stats:
            stats.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
