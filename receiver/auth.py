"""Bearer tokens for `/api/*` (created with `callstore tokens create`).

The middleware authenticates; routes declare the role they need with
`require(request, role)`. A reader may read calls and reports, compliance
also recordings, admin everything.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.errors import error
from store.engine import is_unavailable
from store.tokens import TokenInfo, verify_token


class TokenAuth:
    """Pure ASGI middleware: `/api/*` needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, engine: AsyncEngine, prefix: str = "/api/") -> None:
        self.app = app
        self.engine = engine
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await error(401, "send Authorization: Bearer <token> (create one with `callstore tokens create`)",
                        headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
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
            await error(401, "the token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
            return
        scope.setdefault("state", {})["token"] = info
        await self.app(scope, receive, send)


class Forbidden(Exception):
    def __init__(self, role: str) -> None:
        super().__init__(f"this route needs a {role} token")


def require(request: Request, role: str) -> TokenInfo:
    """The request's token if it has at least `role`; raises Forbidden otherwise."""
    info: TokenInfo = request.state.token
    if not info.allows(role):
        raise Forbidden(role)
    return info
