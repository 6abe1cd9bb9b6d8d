"""Server time of each console page, as the server itself measures it.

    CONSOLE_PASSWORD=... .venv/bin/python bench/console/run.py --url http://127.0.0.1:8080 --user lan \
        [--password-env CONSOLE_PASSWORD] [--rounds 30]

Logs in to a running `callstore serve` as a user (create one with `callstore
users create`), requests every page `--rounds` times and prints the median and
95th percentile of its `Server-Timing: app;dur=` header (the time from the
request reaching the console to the response being ready, without network or
browser). Point it at a server loaded with the reports benchmark's data set
(bench/reports/run.py) to check the 100 ms target on 10M calls.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

import httpx

PAGES = [
    "/ui/", "/ui/wallboard/tiles", "/ui/reports", "/ui/reports?interval=hour", "/ui/reports?interval=15m",
    "/ui/calls", "/ui/calls?phone=0912345678", "/ui/alerts", "/ui/audit",
]


def server_ms(response: httpx.Response) -> float:
    found = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if found is None:
        raise SystemExit(f"{response.url}: no Server-Timing header (status {response.status_code})")
    return float(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", default="CONSOLE_PASSWORD")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--call", help="a call id whose page to time too")
    args = p.parse_args()
    password = os.environ.get(args.password_env)
    if not password:
        print(f"bench: error: --password-env: {args.password_env} is not set", file=sys.stderr)
        return 2
    pages = PAGES + ([f"/ui/calls/{args.call}"] if args.call else [])
    with httpx.Client(base_url=args.url, timeout=60) as c:
        form = c.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        r = c.post("/ui/login", data={"username": args.user, "password": password, "csrf": csrf.group(1)})
        if r.status_code != 303:
            print(f"bench: error: login failed with HTTP {r.status_code}", file=sys.stderr)
            return 1
        print(f"{'page':<40} {'median ms':>10} {'p95 ms':>8}")
        for page in pages:
            c.get(page)  # warm up (templates compiled, connections open)
            times = sorted(server_ms(c.get(page)) for _ in range(args.rounds))
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(f"{page:<40} {statistics.median(times):>10.1f} {p95:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
