"""`POST /webhooks/alohub`: Alohub's call events.

Authenticate (constant time, several keys for rotation, the key names the
tenant), read at most 256 KiB, parse, hand to the batch writer, answer 200
only once the event is durable. Structure is checked strictly (a JSON object
with a non-empty `call_id`); field values are not: the merge stores a bad
value as NULL and flags the event. Rejected bodies are kept as dead letters.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import orjson
from starlette.requests import Request
from starlette.responses import Response

from receiver.batcher import BatchWriter, Unstorable
from receiver.errors import error
from receiver.metrics import Metrics
from receiver.refusals import RefusalLog
from store.dead_letters import DeadLetter
from store.errors import DatabaseUnavailable
from store.ingest import Delivery
from store.merge import call_id_of
from store.settings import TenantSettings

log = logging.getLogger("callstore.receiver.webhook")

MAX_BODY = 256 * 1024
OK = Response(b'{"ok":true}', media_type="application/json")


class KeyRing:
    """Webhook keys to tenants. Every key is compared, in constant time."""

    def __init__(self, tenants: Sequence[TenantSettings]) -> None:
        self._keys = [(k.encode(), t.tenant_id) for t in tenants for k in t.webhook_keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def tenant(self, header: str | None) -> str | None:
        if header is None:
            return None
        given = header.encode("utf-8", "surrogateescape")
        found = None
        for key, tenant_id in self._keys:
            if hmac.compare_digest(given, key):
                found = tenant_id
        return found


class Webhook:
    def __init__(self, keys: KeyRing, writer: BatchWriter, metrics: Metrics) -> None:
        self.keys = keys
        self.writer = writer
        self.metrics = metrics
        self.refusals = RefusalLog("webhook delivery")

    async def endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._handle(request)
        self.metrics.webhook_requests.labels(str(response.status_code)).inc()
        if response.status_code == 200:
            self.metrics.webhook_latency.observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: Request) -> Response:
        tenant_id = self.keys.tenant(request.headers.get("authorization"))
        if tenant_id is None:
            self.refusals.refused(request.client.host if request.client else None, "wrong webhook key")
            return error(401, "the Authorization header does not match a configured webhook key")
        received_at = datetime.now(timezone.utc)

        body, total = await _read_capped(request, MAX_BODY)
        if total > MAX_BODY:
            return await self._reject(request, tenant_id, received_at, body, total, 413, "too_large",
                                      f"the body is {total} bytes; the limit is {MAX_BODY}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return await self._reject(request, tenant_id, received_at, body, total, 400, "invalid_json",
                                      f"the body is not JSON: {str(exc).splitlines()[0][:200]}")
        if not isinstance(payload, dict):
            return await self._reject(request, tenant_id, received_at, body, total, 400, "not_an_object",
                                      f"the body is a JSON {type(payload).__name__}; an object is expected")
        call_id = call_id_of(payload)
        if call_id is None:
            return await self._reject(request, tenant_id, received_at, body, total, 400, "missing_call_id",
                                      "the object has no non-empty call_id (a string or a number)")
        if len(call_id) > 200:
            return await self._reject(request, tenant_id, received_at, body, total, 400, "bad_call_id",
                                      "call_id is longer than 200 characters")

        delivery = Delivery(tenant_id, call_id, "webhook", payload, received_at, hashlib.sha256(body).digest(), body)
        try:
            await self.writer.submit(delivery)
        except DatabaseUnavailable as exc:
            return error(503, f"the event could not be stored right now ({exc}); retry", headers={"Retry-After": "5"})
        except Unstorable as exc:
            return await self._reject(request, tenant_id, received_at, body, total, 400, "unstorable", str(exc))
        return OK

    async def _reject(self, request: Request, tenant_id: str, received_at: datetime, body: bytes, total: int,
                      status: int, reason: str, detail: str) -> Response:
        letter = DeadLetter(
            received_at=received_at, tenant_id=tenant_id, reason=reason, detail=detail, body=body,
            body_bytes=total, content_type=request.headers.get("content-type"),
            remote_addr=request.client.host if request.client else None,
        )
        try:
            await self.writer.submit(letter)
        except (DatabaseUnavailable, Unstorable):
            return error(503, "the rejected body could not be kept right now; retry", headers={"Retry-After": "5"})
        self.metrics.dead_letters.labels(reason).inc()
        log.info("webhook delivery rejected and kept as a dead letter: %s (%d bytes, tenant %s)", reason, total, tenant_id)
        return error(status, detail, code=reason)


async def _read_capped(request: Request, limit: int) -> tuple[bytes, int]:
    """At most `limit + 1` bytes of the body, and the size (from Content-Length when it says more)."""
    declared = request.headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    body = b"".join(chunks)
    if size > limit and declared.isdigit():
        size = max(size, int(declared))
    return body[:limit] if size > limit else body, size
