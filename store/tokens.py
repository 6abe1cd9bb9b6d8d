"""API tokens for `/api/*`: random, shown once, stored as SHA-256 only.

A token is 32 random bytes (URL-safe), so a fast hash is enough: there is
nothing to brute-force. Lookup is by hash; the plain token is never stored.

Every token reads exactly one tenant (`tenant_id`), except the operator's:
an admin token created with `all_tenants`. A token from before tokens had a
tenant, in a deployment with several tenants, has neither: it is refused
until re-issued (`needs_reissue`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import api_tokens

ROLES = ("reader", "compliance", "admin")
#: What each role may do: a role includes the roles before it.
RANK = {role: i for i, role in enumerate(ROLES)}
PREFIX = "cs_"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    token_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    tenant_id: str | None = None
    all_tenants: bool = False

    def allows(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def needs_reissue(self) -> bool:
        return self.tenant_id is None and not self.all_tenants

    @property
    def scope(self) -> str:
        """Which tenants the token reads, as `tokens list` shows it."""
        if self.all_tenants:
            return "all tenants"
        return self.tenant_id or "none: re-issue"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(conn: AsyncConnection, name: str, role: str, tenant_id: str | None) -> tuple[TokenInfo, str]:
    """Create a token that reads `tenant_id`; None makes the operator's token
    for every tenant (admin only). Returns its record and the plain token (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if tenant_id is None and role != "admin":
        raise ValueError("only an admin token may read every tenant")
    plain = PREFIX + secrets.token_urlsafe(32)
    row = (
        await conn.execute(
            api_tokens.insert()
            .values(name=name, role=role, token_hash=hash_token(plain), token_prefix=plain[:10],
                    tenant_id=tenant_id, all_tenants=tenant_id is None)
            .returning(*_columns())
        )
    ).one()
    return TokenInfo(*row), plain


async def list_tokens(conn: AsyncConnection) -> list[TokenInfo]:
    rows = await conn.execute(select(*_columns()).order_by(api_tokens.c.id))
    return [TokenInfo(*r) for r in rows]


async def revoke_token(conn: AsyncConnection, token_id: int) -> bool:
    result = await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=text("now()"))
    )
    return bool(result.rowcount)


_VERIFY = text(
    """
    WITH t AS (
        SELECT id FROM callstore.api_tokens WHERE token_hash = :h AND revoked_at IS NULL
    ), touched AS (
        UPDATE callstore.api_tokens SET last_used_at = now()
        WHERE id IN (SELECT id FROM t) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 second')
    )
    SELECT a.id, a.name, a.role, a.token_prefix, a.created_at, a.revoked_at, a.last_used_at,
           a.tenant_id, a.all_tenants
    FROM callstore.api_tokens a JOIN t USING (id)
    """
)


async def verify_token(conn: AsyncConnection, token: str) -> TokenInfo | None:
    """The active token's record, or None.

    Touches last_used_at at most once a second: `tokens list` shows whole
    seconds, so it is never behind, and a busy token still costs one write a second.
    A token to re-issue is returned too (`needs_reissue`): the caller refuses it, saying why.
    """
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = (await conn.execute(_VERIFY, {"h": hash_token(token)})).first()
    return TokenInfo(*row) if row else None


def _columns():  # type: ignore[no-untyped-def]
    c = api_tokens.c
    return (c.id, c.name, c.role, c.token_prefix, c.created_at, c.revoked_at, c.last_used_at, c.tenant_id,
            c.all_tenants)


async def tokens_to_reissue(conn: AsyncConnection) -> int:
    """Active tokens that belong to no tenant (from before tokens had one)."""
    c = api_tokens.c
    return int(await conn.scalar(
        select(func.count()).where(c.tenant_id.is_(None), c.all_tenants.is_(False), c.revoked_at.is_(None))) or 0)
