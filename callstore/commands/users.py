"""`callstore users create|list|disable|enable|reset-password`: people who log in to the console."""

from __future__ import annotations

import argparse

from callstore.runtime import UsageError, database, one_tenant, run_async
from store.settings import Settings, secret_from_env
from store.tokens import ROLES
from store.users import UserError, check_new_password, create_user, list_users, reset_password, set_disabled


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("users", help="people who log in to the web console (/ui/)")
    usub = p.add_subparsers(dest="users_command", required=True)
    c = usub.add_parser("create", help="create a user of one tenant")
    _tenant(c)
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", required=True, help="the user name typed at login (unique per tenant, any case)")
    _password(c)
    c.set_defaults(func=_create)
    ls = usub.add_parser("list", help="list users (never their passwords)")
    ls.add_argument("--tenant", help="one tenant (default: all)")
    ls.set_defaults(func=_list)
    for name, helptext, disabled in (("disable", "stop a user from logging in; ends their sessions", True),
                                     ("enable", "let a disabled user log in again", False)):
        d = usub.add_parser(name, help=helptext)
        _tenant(d)
        d.add_argument("--name", required=True)
        d.set_defaults(func=_disable, disabled=disabled)
    r = usub.add_parser("reset-password", help="set a new password; ends the user's sessions")
    _tenant(r)
    r.add_argument("--name", required=True)
    _password(r)
    r.set_defaults(func=_reset)


def _tenant(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", help="tenant id (may be left out when one tenant is configured)")


def _password(p: argparse.ArgumentParser) -> None:
    # Never on the command line: it would be in the shell history and in `ps`.
    p.add_argument("--password-env", required=True, metavar="VAR",
                   help="name of the environment variable holding the password (at least 10 characters)")


def _usage(exc: UserError) -> UsageError:
    return UsageError(str(exc))


def _create(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id
    try:
        password = check_new_password(secret_from_env(args.password_env), args.password_env)
    except UserError as exc:
        raise _usage(exc) from None

    async def go() -> str:
        async with database(settings) as engine, engine.begin() as conn:
            try:
                user = await create_user(conn, tenant, args.name, args.role, password)
            except UserError as exc:
                raise _usage(exc) from None
            return f"created user {user.username} ({user.role}) of tenant {user.tenant_id}"

    print(run_async(go()))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id if args.tenant else None

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            rows = await list_users(conn, tenant)
        print(f"{'tenant':<16}  {'name':<24}  {'role':<10}  {'status':<8}  {'created':<19}  last login")
        for u in rows:
            last = u.last_login_at.strftime("%Y-%m-%d %H:%M:%S") if u.last_login_at else "-"
            status = "disabled" if u.disabled else "active"
            print(f"{u.tenant_id:<16}  {u.username:<24}  {u.role:<10}  {status:<8}  {u.created_at:%Y-%m-%d %H:%M:%S}  {last}")

    run_async(go())
    return 0


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id

    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            try:
                return await set_disabled(conn, tenant, args.name, args.disabled)
            except UserError as exc:
                raise _usage(exc) from None

    if not run_async(go()):
        raise UsageError(f"--name: tenant {tenant!r} has no user {args.name!r}")
    print(f"{'disabled' if args.disabled else 'enabled'} user {args.name.strip().lower()} of tenant {tenant}")
    return 0


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant).tenant_id
    try:
        password = check_new_password(secret_from_env(args.password_env), args.password_env)
    except UserError as exc:
        raise _usage(exc) from None

    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            try:
                return await reset_password(conn, tenant, args.name, password)
            except UserError as exc:
                raise _usage(exc) from None

    if not run_async(go()):
        raise UsageError(f"--name: tenant {tenant!r} has no user {args.name!r}")
    print(f"new password set for {args.name.strip().lower()} of tenant {tenant}; their sessions have ended")
    return 0
