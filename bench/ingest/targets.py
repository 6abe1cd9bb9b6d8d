"""The two comparison servers of bench/ingest: a bare Starlette endpoint, and
the naive durable handler most people would write (a SQLAlchemy session and a
commit per request). callstore itself runs as `callstore serve --role receiver`."""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import datetime, timezone

import uvicorn
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from store import raw_body
from store.engine import create_engine
from store.tables import calls, raw_events


def bare_app() -> Starlette:
    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/webhooks/alohub", endpoint, methods=["POST"])])


def naive_app(database_url: str) -> Starlette:
    engine = create_engine(database_url, pool_size=20)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def endpoint(request: Request) -> Response:
        if request.headers.get("authorization") != "bench-webhook-key":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.body()
        event = json.loads(body)
        now = datetime.now(timezone.utc)
        async with sessions() as session:
            await session.execute(
                insert(raw_events).values(
                    tenant_id="default", raw_month=now.date().replace(day=1), call_id=event["call_id"], source="webhook",
                    body_sha256=hashlib.sha256(body).digest(), body=raw_body.pack(body), received_at=now, last_received_at=now,
                ).on_conflict_do_update(
                    constraint="raw_events_delivery_key", set_={"deliveries": raw_events.c.deliveries + 1}
                )
            )
            values = {
                "tenant_id": "default", "call_id": event["call_id"], "direction": event.get("direction"),
                "call_status": event.get("call_status"), "caller_number": event.get("caller_number"),
                "agent": event.get("userName"), "first_source": "webhook",
            }
            stmt = insert(calls).values(**values)
            await session.execute(stmt.on_conflict_do_update(
                index_elements=["tenant_id", "call_id"],
                set_={k: stmt.excluded[k] for k in ("direction", "call_status", "caller_number", "agent")} | {"updated_at": func.now()},
            ))
            await session.commit()
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/webhooks/alohub", endpoint, methods=["POST"])])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("bare", "naive"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    app = bare_app() if args.kind == "bare" else naive_app(args.database_url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
