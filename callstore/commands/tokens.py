"""`callstore tokens create|list|revoke`.

Every token reads one tenant; the operator's token for every tenant is
`--role admin --all-tenants`, and `tokens list` says so.
"""

from __future__ import annotations

import argparse

from callstore.runtime import UsageError, database, run_async
from store.local_time import local_iso, tenant_zone
from store.settings import Settings
from store.tokens import ROLES, create_token, list_tokens, revoke_token


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tokens", help="API tokens for /api/*")
    tsub = p.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", help="create a token and print it alone on stdout (shown once)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--tenant", help="the tenant the token reads (may be left out when one tenant is configured)")
    c.add_argument("--all-tenants", action="store_true",
                   help="the operator's token: reads every tenant (only with --role admin)")
    c.add_argument("--name", default="", help="who or what the token is for")
    c.set_defaults(func=_create)
    ls = tsub.add_parser("list", help="list tokens (never their values)")
    ls.set_defaults(func=_list)
    r = tsub.add_parser("revoke", help="revoke a token by id")
    r.add_argument("id", type=int)
    r.set_defaults(func=_revoke)


def token_tenant(args: argparse.Namespace, settings: Settings) -> str | None:
    """The tenant of the token to create; None for --all-tenants. Raises UsageError."""
    ids = [t.tenant_id for t in settings.tenants]
    if args.all_tenants:
        if args.tenant:
            raise UsageError("--all-tenants: a token reads one tenant or all of them; drop --tenant")
        if args.role != "admin":
            raise UsageError("--all-tenants: only an admin token may read every tenant (--role admin)")
        return None
    if args.tenant is None:
        if len(ids) != 1:
            raise UsageError(f"--tenant: several tenants are configured; name one of {', '.join(ids)}")
        return ids[0]
    if args.tenant not in ids:
        raise UsageError(f"--tenant: unknown tenant {args.tenant!r}; configured: {', '.join(ids)}")
    return str(args.tenant)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    tenant = token_tenant(args, settings)
    name = args.name or args.role

    async def go() -> str:
        async with database(settings) as engine, engine.begin() as conn:
            _, plain = await create_token(conn, name, args.role, tenant)
            return plain

    # The token alone, so that `TOKEN=$(callstore tokens create ...)` works.
    print(run_async(go()))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            rows = await list_tokens(conn)
        print(f"{'id':>4}  {'role':<10}  {'tenant':<16}  {'prefix':<10}  {'created':<25}  {'last used':<25}  "
              f"{'status':<8}  name")
        for t in rows:
            status = "revoked" if t.revoked_at else ("re-issue" if t.needs_reissue else "active")
            zone = tenant_zone(settings.tenants, t.tenant_id)
            print(f"{t.id:>4}  {t.role:<10}  {t.scope:<16}  {t.token_prefix:<10}  {local_iso(t.created_at, zone):<25}  "
                  f"{local_iso(t.last_used_at, zone):<25}  {status:<8}  {t.name}")

    run_async(go())
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            return await revoke_token(conn, args.id)

    if not run_async(go()):
        raise UsageError(f"id: no active token with id {args.id}")
    print(f"revoked token {args.id}")
    return 0
