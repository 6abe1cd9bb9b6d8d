"""`callstore tokens create|list|revoke`."""

from __future__ import annotations

import argparse

from callstore.runtime import UsageError, database, run_async
from store.local_time import local_iso, tenant_zone
from store.settings import Settings
from store.tokens import ROLES, create_token, list_tokens, revoke_token


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tokens", help="API tokens for /api/*")
    tsub = p.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", help="create a token (shown once)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", default="", help="who or what the token is for")
    c.set_defaults(func=_create)
    ls = tsub.add_parser("list", help="list tokens (never their values)")
    ls.set_defaults(func=_list)
    r = tsub.add_parser("revoke", help="revoke a token by id")
    r.add_argument("id", type=int)
    r.set_defaults(func=_revoke)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or args.role

    async def go() -> str:
        async with database(settings) as engine, engine.begin() as conn:
            info, plain = await create_token(conn, name, args.role)
            return f"{plain}\n# id {info.id}, role {info.role}: store it now, it is not shown again"

    print(run_async(go()))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            rows = await list_tokens(conn)
        print(f"{'id':>4}  {'role':<10}  {'prefix':<10}  {'created':<25}  {'last used':<25}  {'status':<8}  name")
        zone = tenant_zone(settings.tenants, None)
        for t in rows:
            status = "revoked" if t.revoked_at else "active"
            print(f"{t.id:>4}  {t.role:<10}  {t.token_prefix:<10}  {local_iso(t.created_at, zone):<25}  "
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
