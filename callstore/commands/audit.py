"""`callstore audit list`: the recording access audit (plays, downloads,
refused requests), newest first, with the filters of GET /api/audit/recordings."""

from __future__ import annotations

import argparse
from typing import Any

from callstore.runtime import UsageError, database, parse_when, run_async
from store.audit import MAX_LIMIT, AccessQuery, list_accesses
from store.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="the recording access audit")
    asub = p.add_subparsers(dest="audit_command", required=True)
    ls = asub.add_parser("list", help="accesses to recordings, refused ones included, newest first")
    ls.add_argument("--tenant", help="one tenant (default: every tenant)")
    ls.add_argument("--call", help="a call id")
    ls.add_argument("--token", type=int, help="an API token id (callstore tokens list)")
    ls.add_argument("--user", help="a console user name")
    ls.add_argument("--from", dest="start", help="ISO 8601; without offset in the tenant's zone (else UTC)")
    ls.add_argument("--to", dest="end", help="ISO 8601, exclusive")
    ls.add_argument("--limit", type=int, default=100, help=f"rows to show, 1-{MAX_LIMIT} (default 100)")
    ls.set_defaults(func=_list)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    ids = [t.tenant_id for t in settings.tenants]
    if args.tenant is not None and args.tenant not in ids:
        raise UsageError(f"--tenant: unknown tenant {args.tenant!r}; configured: {', '.join(ids)}")
    if not 1 <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit: must be between 1 and {MAX_LIMIT}")
    zone = settings.tenant(args.tenant).timezone if args.tenant else "UTC"
    start = parse_when(args.start, zone, "--from") if args.start else None
    end = parse_when(args.end, zone, "--to") if args.end else None
    if start and end and start >= end:
        raise UsageError("--to: must be after --from")
    query = AccessQuery(tenant=args.tenant, call_id=args.call, token_id=args.token, user_name=args.user,
                        start=start, end=end, limit=args.limit)

    async def go() -> list[dict[str, Any]]:
        async with database(settings) as engine, engine.connect() as conn:
            rows, _ = await list_accesses(conn, query)
            return rows

    rows = run_async(go())
    print(f"{'id':>6}  {'accessed (UTC)':<19}  {'tenant':<12}  {'status':>6}  {'bytes':>10}  {'who':<28}  "
          f"{'client':<15}  call")
    for r in rows:
        who = f"user {r['user_name']}" if r["user_name"] else (
            f"token {r['token_id']} {r['token_name'] or ''}".strip() if r["token_id"] else "no token")
        print(f"{r['id']:>6}  {r['accessed_at']:%Y-%m-%d %H:%M:%S}  {r['tenant_id'] or '-':<12}  "
              f"{r['status_code']:>6}  {r['bytes_sent']:>10}  {who[:28]:<28}  {r['client_addr'] or '-':<15}  "
              f"{_printable(r['call_id'])}")
    return 0


def _printable(value: str) -> str:
    """Call ids come from the client's request: no terminal escapes on the operator's screen."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value)
