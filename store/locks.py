"""Serialisation points that only the service can take.

A transaction that must not run concurrently with another of its kind (the
rollup refresh, one tenant's alert evaluation) locks a row of
callstore.locks FOR UPDATE; the lock goes with the transaction. Advisory
locks would do the same, but any role that can connect, the read-only BI
role included, can take any advisory lock and so stall the service; a row
lock needs UPDATE on the table, which only the service has.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_ADD = text("INSERT INTO callstore.locks (name) VALUES (:n) ON CONFLICT (name) DO NOTHING")
_LOCK = text("SELECT name FROM callstore.locks WHERE name = :n FOR UPDATE")


async def hold(conn: AsyncConnection, name: str) -> None:
    """Wait for and hold lock `name` until the caller's transaction ends."""
    if await conn.scalar(_LOCK, {"n": name}) is None:
        # First use of this name: create its row (a concurrent creator waits
        # for ours, then does nothing), then lock it.
        await conn.execute(_ADD, {"n": name})
        await conn.execute(_LOCK, {"n": name})
