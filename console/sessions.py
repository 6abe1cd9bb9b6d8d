"""Console sessions, login throttling and the cookie signing key, in Postgres.

A session is 32 random bytes; the cookie carries them with an HMAC-SHA256
signature (a forged or altered cookie is refused before any database work),
and the database keeps only their SHA-256 with the session's CSRF token.
Keeping sessions in the database, not in the cookie, is what lets a logout,
a disabled user or a new password end them at once, on every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.users import User

#: A session unused for this long is over.
IDLE = timedelta(hours=12)
#: Failed logins in THROTTLE_WINDOW after which a user name, or an address, must wait.
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
SECRET_NAME = "session_signing_key"


async def signing_key(conn: AsyncConnection, configured: str | None) -> bytes:
    """CALLSTORE_SESSION_SECRET, else a key generated once and kept in the database
    (the first replica to start writes it; every other one reads the same)."""
    if configured:
        return configured.encode()
    await conn.execute(
        text("INSERT INTO callstore.console_secrets (name, value) VALUES (:n, :v) ON CONFLICT (name) DO NOTHING"),
        {"n": SECRET_NAME, "v": secrets.token_urlsafe(48)},
    )
    value = await conn.scalar(text("SELECT value FROM callstore.console_secrets WHERE name = :n"), {"n": SECRET_NAME})
    return str(value).encode()


def sign(key: bytes, session_id: str) -> str:
    mac = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return f"{session_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def unsign(key: bytes, cookie: str) -> str | None:
    session_id, _, mac = cookie.partition(".")
    if not session_id or len(cookie) > 200:
        return None
    expected = sign(key, session_id)
    return session_id if hmac.compare_digest(expected.encode(), cookie.encode()) else None


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str


async def open_session(conn: AsyncConnection, user_id: int) -> str:
    """A new session of `user_id`; returns its id (for the cookie, shown nowhere else)."""
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        text("INSERT INTO callstore.console_sessions (id_hash, user_id, csrf_token) VALUES (:h, :u, :c)"),
        {"h": _hash(session_id), "u": user_id, "c": secrets.token_urlsafe(32)},
    )
    # Old idle sessions of everyone go here, where a row is written anyway.
    await conn.execute(text("DELETE FROM callstore.console_sessions WHERE last_seen_at < now() - CAST(:idle AS interval)"),
                       {"idle": IDLE})
    return session_id


_FIND = text(
    """
    WITH s AS (
        SELECT s.id_hash, s.csrf_token, u.id, u.tenant_id, u.username, u.role, u.disabled, u.created_at,
               u.last_login_at, s.last_seen_at
        FROM callstore.console_sessions s JOIN callstore.users u ON u.id = s.user_id
        WHERE s.id_hash = :h AND NOT u.disabled AND s.last_seen_at > now() - CAST(:idle AS interval)
    ), touched AS (
        UPDATE callstore.console_sessions SET last_seen_at = now()
        WHERE id_hash IN (SELECT id_hash FROM s WHERE last_seen_at < now() - interval '1 minute')
    )
    SELECT id, tenant_id, username, role, disabled, created_at, last_login_at, csrf_token FROM s
    """
)


async def find_session(conn: AsyncConnection, session_id: str) -> Session | None:
    """The live session with this id, its idle clock restarted (at most once a minute)."""
    row = (await conn.execute(_FIND, {"h": _hash(session_id), "idle": IDLE})).first()
    if row is None:
        return None
    return Session(User(*row[:7]), row[7])


async def close_session(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(text("DELETE FROM callstore.console_sessions WHERE id_hash = :h"), {"h": _hash(session_id)})


async def throttled(conn: AsyncConnection, username: str, client_addr: str | None) -> bool:
    """True when this user name or this address failed too often lately."""
    row = (await conn.execute(
        text("""
            SELECT count(*) FILTER (WHERE username = :u) AS by_user,
                   count(*) FILTER (WHERE client_addr IS NOT DISTINCT FROM :a) AS by_addr
            FROM callstore.console_logins
            WHERE NOT ok AND at > now() - CAST(:w AS interval) AND (username = :u OR client_addr IS NOT DISTINCT FROM :a)
        """),
        {"u": username.strip().lower()[:200], "a": client_addr, "w": THROTTLE_WINDOW},
    )).one()
    return bool(row.by_user >= MAX_FAILURES_PER_USER or row.by_addr >= MAX_FAILURES_PER_ADDRESS)


async def record_login(conn: AsyncConnection, username: str, client_addr: str | None, ok: bool) -> None:
    await conn.execute(
        text("INSERT INTO callstore.console_logins (username, client_addr, ok) VALUES (:u, :a, :ok)"),
        {"u": username.strip().lower()[:200], "a": client_addr, "ok": ok},
    )
    if ok:  # a success clears the user's failures, so one typo a day never locks anyone out
        await conn.execute(text("DELETE FROM callstore.console_logins WHERE username = :u AND NOT ok"),
                           {"u": username.strip().lower()[:200]})
