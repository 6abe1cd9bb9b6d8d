"""Bearer tokens for `/api/*` (created with `callstore tokens create`), and
the one place where a request's tenant is decided.

The middleware authenticates. Routes call `caller(request, role)`: it checks
the role (a reader may read calls and reports, compliance also recordings and
their audit, admin everything) and returns the tenant the request reads:
- a token of one tenant reads that tenant; `?tenant=` naming any other one
  answers 404, exactly as for a tenant that does not exist, so a token never
  learns whether another tenant, its calls or its recordings exist;
- the operator's token (`--role admin --all-tenants`) reads the tenant it
  names, or every tenant (`tenant` None) when it names none and several are
  configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.errors import error
from receiver.params import text_param
from receiver.refusals import RefusalLog
from store.engine import is_unavailable
from store.tokens import TokenInfo, verify_token

#: Called for every 401 of the middleware: (scope, status, token or None).
OnRefused = Callable[[Scope, int, TokenInfo | None], Awaitable[None]]

_REISSUE = ("this token belongs to no tenant (it was created before tokens had one, and several tenants are "
            "configured): create a new one with `callstore tokens create --tenant T` and revoke this one")


class TokenAuth:
    """Pure ASGI middleware: `/api/*` needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, engine: AsyncEngine, prefix: str = "/api/",
                 on_refused: OnRefused | None = None) -> None:
        self.app = app
        self.engine = engine
        self.prefix = prefix
        self.on_refused = on_refused
        self.refusals = RefusalLog("API request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await self._refuse(scope, receive, send, None, "no bearer token",
                               "send Authorization: Bearer <token> (create one with `callstore tokens create`)")
            return
        try:
            async with self.engine.connect() as conn:
                info = await verify_token(conn, token.strip())
                await conn.commit()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            await error(503, "the database is not reachable; retry", headers={"Retry-After": "5"})(scope, receive, send)
            return
        if info is None:
            await self._refuse(scope, receive, send, None, "unknown token", "the token is unknown or revoked")
            return
        if info.needs_reissue:
            await self._refuse(scope, receive, send, info, "token to re-issue", _REISSUE)
            return
        scope.setdefault("state", {})["token"] = info
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, info: TokenInfo | None, reason: str,
                      detail: str) -> None:
        client = scope.get("client")
        self.refusals.refused(client[0] if client else None, reason)
        if self.on_refused is not None:
            await self.on_refused(scope, 401, info)
        await error(401, detail, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)


class Forbidden(Exception):
    def __init__(self, role: str) -> None:
        super().__init__(f"this route needs a {role} token")


class NotVisible(Exception):
    """A tenant the token may not read, or that does not exist: the same 404."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r}: not found")


def require(request: Request, role: str) -> TokenInfo:
    """The request's token if it has at least `role`; raises Forbidden otherwise."""
    info: TokenInfo = request.state.token
    if not info.allows(role):
        raise Forbidden(role)
    return info


@dataclass(frozen=True)
class Caller:
    token: TokenInfo
    #: The one tenant the request reads; None: every tenant (the operator's token only).
    tenant: str | None


def caller(request: Request, role: str) -> Caller:
    """Role check and tenant scope of an `/api` request. Raises Forbidden,
    NotVisible (answered 404), or BadParameter for a malformed `tenant`."""
    token = require(request, role)
    asked = text_param(request.query_params, "tenant", 64)
    configured: tuple[str, ...] = request.app.state.tenant_ids
    if not token.all_tenants:
        if asked is not None and asked != token.tenant_id:
            raise NotVisible(asked)
        return Caller(token, token.tenant_id)
    if asked is not None:
        if asked not in configured:
            raise NotVisible(asked)
        return Caller(token, asked)
    return Caller(token, configured[0] if len(configured) == 1 else None)
