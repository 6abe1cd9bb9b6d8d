"""`GET /api/recordings/{call_id}`: the archived audio, seekable, every access audited.

The audit row is written BEFORE the first byte with the planned byte count
(if it cannot be written, nothing is served: 503), and completed AFTER the
response with the bytes really handed to the server and whether the body
ended; a client that goes away mid-file leaves `complete = false`.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from receiver.audit import RefusalAudit
from receiver.auth import Forbidden, NotVisible, caller
from receiver.byte_ranges import ByteRange, Unsatisfiable, parse_range
from receiver.errors import error
from receiver.openapi import error_responses
from receiver.params import BadParameter, check_text
from store.engine import is_unavailable
from store.recording_store import RecordingStore, encode_segment
from store.recordings import Access, Recording, close_access, find_recordings, open_access
from store.tokens import TokenInfo

log = logging.getLogger("callstore.recordings")


class RecordingsAPI:
    def __init__(self, engine: AsyncEngine, store: RecordingStore, audit: RefusalAudit) -> None:
        self.engine = engine
        self.store = store
        self.audit = audit

    def routes(self) -> list[Route]:
        return [Route("/api/recordings/{call_id:path}", self.get, methods=["GET"])]

    async def get(self, request: Request) -> Response:
        token: TokenInfo = request.state.token
        try:
            who = caller(request, "compliance")
            call_id = check_text("call_id", request.path_params["call_id"])
        except BadParameter as exc:
            return error(400, str(exc))
        except Forbidden as exc:
            return await self._refuse(request, token, token.tenant_id, 403, str(exc), "forbidden")
        except NotVisible:
            # The same answer as for a call without a recording: nothing is confirmed.
            return await self._refuse(request, token, token.tenant_id, 404,
                                      f"no stored recording for call {request.path_params['call_id'][:200]!r}",
                                      "not_stored")
        async with self.engine.connect() as conn:
            found = await find_recordings(conn, call_id, who.tenant)
        if len(found) > 1:
            tenants = ", ".join(r.tenant_id for r in found)
            return await self._refuse(request, token, None, 409,
                                      f"call {call_id!r} exists in tenants {tenants}; pass ?tenant=", "ambiguous")
        if not found or found[0].status != "stored" or found[0].storage_key is None:
            state = f" (archive state: {found[0].status})" if found else ""
            return await self._refuse(request, token, found[0].tenant_id if found else who.tenant, 404,
                                      f"no stored recording for call {call_id!r}{state}", "not_stored")
        rec = found[0]
        size = await self.store.size(rec.storage_key)  # type: ignore[arg-type]
        if size is None or size != rec.size:
            log.error("recording of call %s: file %s (run callstore recordings verify)",
                      call_id, "missing" if size is None else "has the wrong size")
            return error(500, "the stored file is missing or altered; run `callstore recordings verify`",
                         code="integrity")
        status, byte_range = 200, None
        if_range = request.headers.get("if-range")
        if if_range is None or if_range.strip() == _etag(rec):
            try:
                byte_range = parse_range(request.headers.get("range"), size)
            except Unsatisfiable:
                status = 416
            else:
                status = 206 if byte_range is not None else 200
        access = Access(
            token_id=token.id, token_name=token.name, tenant_id=rec.tenant_id, call_id=rec.call_id,
            client_addr=request.client.host if request.client else None, method=request.method,
            range_header=(request.headers.get("range") or None) and request.headers["range"][:200],
            status_code=status,
            first_byte=byte_range.start if byte_range else (0 if status == 200 else None),
            last_byte=byte_range.end if byte_range else (size - 1 if status == 200 else None),
            bytes_planned=0 if status == 416 or request.method == "HEAD" else (byte_range.length if byte_range else size),
            sha256=rec.sha256,
        )
        try:
            async with self.engine.begin() as conn:
                access_id = await open_access(conn, access)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            return error(503, "the access audit cannot be written; nothing is served without it",
                         headers={"Retry-After": "5"})
        if status == 416:
            return error(416, f"range not satisfiable: the file has {size} bytes", code="range_not_satisfiable",
                         headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
        return AudioResponse(self, rec, size, byte_range, access_id, head=request.method == "HEAD")

    async def _refuse(self, request: Request, token: TokenInfo, tenant: str | None, status: int, detail: str,
                      code: str) -> Response:
        await self.audit.refused(request, status, token, tenant)
        return error(status, detail, code=code)

    async def finish(self, tenant_id: str, access_id: int, sent: int, complete: bool) -> None:
        try:
            async with self.engine.begin() as conn:
                await close_access(conn, tenant_id, access_id, sent, complete)
        except Exception:
            # The row written before serving stands (planned bytes); say so loudly.
            log.exception("could not complete audit row %d (%d bytes sent)", access_id, sent)


def _etag(rec: Recording) -> str:
    return f'"{rec.sha256}"'


class AudioResponse(Response):
    """Streams one byte range of a recording, counting what goes out."""

    def __init__(self, api: RecordingsAPI, rec: Recording, size: int, byte_range: ByteRange | None,
                 access_id: int, head: bool) -> None:
        self.api, self.rec, self.access_id, self.head = api, rec, access_id, head
        self.range = byte_range or ByteRange(0, size - 1)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": _etag(rec),
            "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(rec.sha256 or '')).decode()}:",
            "Content-Length": str(self.range.length),
            "Content-Disposition": f'inline; filename="{encode_segment(rec.call_id)}.mp3"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if byte_range is not None:
            headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        super().__init__(status_code=206 if byte_range is not None else 200, media_type="audio/mpeg", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent, complete = 0, False
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    try:
                        await body()
                    except OSError:  # the client went away (uvicorn's ClientDisconnected)
                        pass
                    tg.cancel_scope.cancel()

                async def body() -> None:
                    nonlocal sent, complete
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                    if not self.head:
                        key = self.rec.storage_key or ""
                        async for chunk in self.api.store.open_range(key, self.range.start, self.range.end):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                            sent += len(chunk)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    complete = self.head or sent == self.range.length

                async def until_disconnect() -> None:
                    while True:
                        message: Message = await receive()
                        if message["type"] == "http.disconnect":
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(stream)
                tg.start_soon(until_disconnect)
        finally:
            with anyio.CancelScope(shield=True):
                await self.api.finish(self.rec.tenant_id, self.access_id, sent, complete)


OPENAPI_PATHS: dict[str, Any] = {
    "/api/recordings/{call_id}": {
        "get": {
            "summary": "A call's archived recording (audio/mpeg), with HTTP Range support",
            "description": "Compliance role; the token's tenant (another tenant's recording answers 404). "
                           "Single byte ranges (206 + Content-Range; 416 when unsatisfiable); ETag is the file's "
                           "SHA-256. Every request, refused ones included (401, 403, 404, 409), writes a row to "
                           "analytics.recording_access.",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64}},
                {"name": "Range", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^bytes=\\d*-\\d*$"}},
            ],
            "responses": {
                "200": {"description": "the whole file", "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "the requested range", "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}},
                **error_responses(400, 401, 403, 404, 409, 416, 500, 503),
            },
        }
    },
}
