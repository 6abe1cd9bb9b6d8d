"""Rejected webhook deliveries, kept with their raw body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import NO_TENANT, dead_letters

#: Bodies larger than this are kept truncated (the byte count stays exact).
KEEP_BYTES = 256 * 1024
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class DeadLetter:
    received_at: datetime
    tenant_id: str | None
    reason: str
    detail: str
    body: bytes
    body_bytes: int
    content_type: str | None = None
    remote_addr: str | None = None


async def insert_dead_letters(conn: AsyncConnection, letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    await conn.execute(
        insert(dead_letters),
        [
            {
                "received_at": d.received_at,
                "tenant_id": NO_TENANT if d.tenant_id is None else d.tenant_id,
                "reason": d.reason,
                "detail": d.detail[:1000],
                "body": d.body[:KEEP_BYTES],
                # The size may come from a client's Content-Length: absurd ones are capped to the column.
                "body_bytes": min(d.body_bytes, _INT_MAX),
                "content_type": (d.content_type or "")[:200] or None,
                "remote_addr": d.remote_addr,
            }
            for d in letters
        ],
    )
