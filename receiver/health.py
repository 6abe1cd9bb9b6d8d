"""`/healthz` (the process answers) and `/readyz` (it can do its job)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from store.replica import ReadRouting


async def healthz(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


class Readiness:
    def __init__(self, engine: AsyncEngine, heads: frozenset[str], spool_status: Callable[[], dict[str, float]] | None = None,
                 reads: ReadRouting | None = None) -> None:
        self.engine = engine
        self.heads = heads
        self.spool_status = spool_status
        self.reads = reads

    async def endpoint(self, request: Request) -> Response:
        checks: dict[str, object] = {}
        ready = True
        try:
            async with asyncio.timeout(3):
                async with self.engine.connect() as conn:
                    rows = await conn.execute(text("SELECT version_num FROM callstore.alembic_version"))
                    current = sorted(r[0] for r in rows)
            checks["database"] = "ok"
            checks["schema"] = current
            if set(current) != self.heads:
                checks["schema_expected"] = sorted(self.heads)
                ready = False
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unreachable ({type(exc).__name__})"
            ready = False
        if self.spool_status is not None:
            spool = self.spool_status()
            checks["spool"] = spool
            if spool.get("full"):  # webhooks are refused with 503 until it drains
                ready = False
        if self.reads is not None:
            # Never a reason for 503: without the replica, reads go to the primary.
            checks["replica"] = self.reads.status()
        body = orjson.dumps({"ready": ready, **checks})
        return Response(body, status_code=200 if ready else 503, media_type="application/json")
