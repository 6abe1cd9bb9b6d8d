"""People who log in to the web console (API tokens stay for machines).

A user belongs to exactly one tenant and has one role (reader, compliance,
admin: each includes the ones before it). Names are unique per tenant and
compared in lower case. Passwords are hashed with scrypt (memory-hard, in the
standard library): `scrypt$N$r$p$salt$hash`, salt and hash in base64, so the
cost can be raised later and old hashes still verify.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import users
from store.tokens import RANK, ROLES

#: 2**15 x 8 x 128 bytes = 32 MiB of memory per hash, about 0.1 s of one core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_NAME = 128


class UserError(ValueError):
    """A user that cannot be created or changed; the message starts with the argument's name."""


@dataclass(frozen=True)
class User:
    id: int
    tenant_id: str
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    def allows(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=128 * n * SCRYPT_R * 2,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode()[:MAX_PASSWORD * 4], salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=128 * int(n) * int(r) * 2, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


#: Checked against when the user name is unknown, so that a wrong name costs
#: as long as a wrong password and timing does not tell which one was wrong
#: (computed on first use: nothing happens at import time).
_dummy_hash: str | None = None


async def verify_password(password: str, stored: str | None) -> bool:
    """Check in a worker thread (scrypt takes ~0.1 s); an unknown user still pays the cost."""
    global _dummy_hash
    if stored is None:
        if _dummy_hash is None:
            _dummy_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
        await asyncio.to_thread(check_password, password, _dummy_hash)
        return False
    return await asyncio.to_thread(check_password, password, stored)


def normalise_name(name: str) -> str:
    value = name.strip().lower()
    if not value or len(value) > MAX_NAME or any(c.isspace() or ord(c) < 32 or c == "/" for c in value):
        raise UserError(f"--name: must be 1-{MAX_NAME} characters without spaces, control characters or '/'")
    return value


def check_new_password(password: str | None, var: str) -> str:
    if password is None:
        raise UserError(f"--password-env: environment variable {var} is not set or empty")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"--password-env: the password in {var} must have {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


def _columns() -> tuple[Any, ...]:
    c = users.c
    return (c.id, c.tenant_id, c.username, c.role, c.disabled, c.created_at, c.last_login_at)


async def create_user(conn: AsyncConnection, tenant_id: str, name: str, role: str, password: str) -> User:
    if role not in ROLES:
        raise UserError(f"--role: must be one of {', '.join(ROLES)}")
    username = normalise_name(name)
    exists = await conn.scalar(select(users.c.id).where(users.c.tenant_id == tenant_id, users.c.username == username))
    if exists is not None:
        raise UserError(f"--name: tenant {tenant_id!r} already has a user {username!r}")
    hashed = await asyncio.to_thread(hash_password, password)
    row = (await conn.execute(users.insert().values(tenant_id=tenant_id, username=username, role=role,
                                                    password_hash=hashed).returning(*_columns()))).one()
    return User(*row)


async def list_users(conn: AsyncConnection, tenant_id: str | None = None) -> list[User]:
    q = select(*_columns()).order_by(users.c.tenant_id, users.c.username)
    if tenant_id is not None:
        q = q.where(users.c.tenant_id == tenant_id)
    return [User(*r) for r in await conn.execute(q)]


async def set_disabled(conn: AsyncConnection, tenant_id: str, name: str, disabled: bool = True) -> bool:
    """Disable (or enable) a user; a disabled user's sessions end at once."""
    username = normalise_name(name)
    user_id = await conn.scalar(update(users).where(users.c.tenant_id == tenant_id, users.c.username == username)
                                .values(disabled=disabled).returning(users.c.id))
    if user_id is None:
        return False
    if disabled:
        await conn.execute(text("DELETE FROM callstore.console_sessions WHERE user_id = :u"), {"u": user_id})
    return True


async def reset_password(conn: AsyncConnection, tenant_id: str, name: str, password: str) -> bool:
    """Set a new password; every session of the user ends (whoever knew the old one is out)."""
    username = normalise_name(name)
    hashed = await asyncio.to_thread(hash_password, password)
    user_id = await conn.scalar(update(users).where(users.c.tenant_id == tenant_id, users.c.username == username)
                                .values(password_hash=hashed, password_changed_at=text("now()")).returning(users.c.id))
    if user_id is None:
        return False
    await conn.execute(text("DELETE FROM callstore.console_sessions WHERE user_id = :u"), {"u": user_id})
    return True


async def login_candidates(conn: AsyncConnection, login: str) -> list[tuple[User, str]]:
    """Active users a login name can mean, with their password hashes.

    `tenant/name` names one tenant's user; a bare name is looked up in every
    tenant (names are usually unique across them)."""
    tenant, sep, name = login.strip().rpartition("/")
    q = select(*_columns(), users.c.password_hash).where(users.c.username == name.lower(), users.c.disabled.is_(False))
    if sep:
        q = q.where(users.c.tenant_id == tenant)
    rows = await conn.execute(q.order_by(users.c.tenant_id).limit(10))
    return [(User(*r[:-1]), r[-1]) for r in rows]


async def touch_login(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=text("now()")))
