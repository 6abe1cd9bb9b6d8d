"""Bad input to every route of this branch: a 4xx with a JSON error, never a
5xx, never a crash, nothing stored but the webhook's dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from store.raw_body import unpack
from store.tokens import create_token
from tests.conftest import WEBHOOK_KEY
from tests.receiver.test_webhook import rows

K = WEBHOOK_KEY


def nested(depth: int) -> bytes:
    return b'{"call_id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] | None = None
    #: The webhook keeps the body as a dead letter.
    dead_letter: bool = False


# Requests a client library can send. The token placeholder {token} is a valid reader token.
CASES = [
    # Webhook, authenticated, bad structure: 400/413 and a dead letter each.
    Case("malformed json", "POST", "/webhooks/alohub", b'{"call_id":', {"Authorization": K}, True),
    Case("empty body", "POST", "/webhooks/alohub", b"", {"Authorization": K}, True),
    Case("trailing garbage", "POST", "/webhooks/alohub", b'{"call_id": "a"} xyz', {"Authorization": K}, True),
    Case("json array", "POST", "/webhooks/alohub", b'[{"call_id": "a"}]', {"Authorization": K}, True),
    Case("json string", "POST", "/webhooks/alohub", b'"call_id"', {"Authorization": K}, True),
    Case("call_id list", "POST", "/webhooks/alohub", b'{"call_id": ["a"]}', {"Authorization": K}, True),
    Case("call_id bool", "POST", "/webhooks/alohub", b'{"call_id": false}', {"Authorization": K}, True),
    Case("call_id fraction", "POST", "/webhooks/alohub", b'{"call_id": 1.5}', {"Authorization": K}, True),
    Case("call_id infinite", "POST", "/webhooks/alohub", b'{"call_id": 1e999}', {"Authorization": K}, True),
    Case("call_id NaN", "POST", "/webhooks/alohub", b'{"call_id": NaN}', {"Authorization": K}, True),
    Case("call_id blank", "POST", "/webhooks/alohub", b'{"call_id": "   "}', {"Authorization": K}, True),
    Case("duplicate keys, last empty", "POST", "/webhooks/alohub", b'{"call_id": "a", "call_id": ""}', {"Authorization": K}, True),
    Case("call_id 201 chars", "POST", "/webhooks/alohub", json.dumps({"call_id": "x" * 201}).encode(), {"Authorization": K}, True),
    Case("100k nested arrays", "POST", "/webhooks/alohub", b"[" * 100_000 + b"]" * 100_000, {"Authorization": K}, True),
    Case("100k nested objects", "POST", "/webhooks/alohub", b'{"a":' * 40_000 + b"1" + b"}" * 40_000, {"Authorization": K}, True),
    Case("invalid utf-8", "POST", "/webhooks/alohub", b'{"call_id": "\xff\xfe"}', {"Authorization": K}, True),
    Case("utf-16 with BOM", "POST", "/webhooks/alohub", '{"call_id": "a"}'.encode("utf-16"), {"Authorization": K}, True),
    Case("over 256 KiB", "POST", "/webhooks/alohub", b'{"call_id": "a", "p": "' + b"x" * 300_000 + b'"}', {"Authorization": K}, True),
    # Webhook, not authenticated: 401, nothing kept.
    Case("no key", "POST", "/webhooks/alohub", b'{"call_id": "a"}'),
    Case("Bearer key", "POST", "/webhooks/alohub", b'{"call_id": "a"}', {"Authorization": f"Bearer {K}"}),
    Case("key with a suffix", "POST", "/webhooks/alohub", b'{"call_id": "a"}', {"Authorization": f"{K}x"}),
    Case("8 KiB key", "POST", "/webhooks/alohub", b'{"call_id": "a"}', {"Authorization": "k" * 8192}),
    Case("sql in key", "POST", "/webhooks/alohub", b'{"call_id": "a"}', {"Authorization": "' OR '1'='1"}),
    # Wrong methods on every route.
    *[Case(f"{m} webhook", m, "/webhooks/alohub", headers={"Authorization": K}) for m in ("GET", "PUT", "DELETE", "PATCH")],
    *[Case(f"POST {p}", "POST", p, b"{}") for p in ("/healthz", "/readyz", "/metrics", "/openapi.json")],
    Case("DELETE metrics", "DELETE", "/metrics"),
    # Paths and ids.
    Case("traversal under webhook", "POST", "/webhooks/alohub/..%2F..%2Fetc%2Fpasswd", b"{}", {"Authorization": K}),
    Case("encoded dots", "GET", "/%2e%2e/%2e%2e/etc/passwd"),
    Case("api traversal, no token", "GET", "/api/calls/..%2F..%2Fetc%2Fpasswd"),
    Case("api traversal, token", "GET", "/api/calls/..%2F..%2Fetc%2Fpasswd", headers={"Authorization": "Bearer {token}"}),
    Case("api recording traversal", "GET", "/api/recordings/%2e%2e%2f%2e%2e%2fetc%2fpasswd", headers={"Authorization": "Bearer {token}"}),
    Case("api sql in query", "GET", "/api/calls?phone=%27%20OR%201%3D1--&agent=%22%3B%20DROP%20TABLE%20callstore.calls%3B--",
         headers={"Authorization": "Bearer {token}"}),
    Case("api NUL in query", "GET", "/api/calls?transaction_id=%00&from=%ff", headers={"Authorization": "Bearer {token}"}),
    Case("very long path", "GET", "/" + "a" * 8000),
    # Tokens.
    Case("api no token", "GET", "/api/calls"),
    Case("api empty bearer", "GET", "/api/calls", headers={"Authorization": "Bearer"}),
    Case("api basic auth", "GET", "/api/calls", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    Case("api unknown token", "GET", "/api/calls", headers={"Authorization": "Bearer cs_not_a_token"}),
    Case("api 10k token", "GET", "/api/calls", headers={"Authorization": "Bearer " + "t" * 10_000}),
    Case("api sql token", "GET", "/api/calls", headers={"Authorization": "Bearer ' OR 1=1--"}),
    Case("api webhook key as token", "GET", "/api/calls", headers={"Authorization": f"Bearer {K}"}),
    Case("api token, no such route", "POST", "/api/calls", b"{}", headers={"Authorization": "Bearer {token}"}),
]

# Requests only a raw socket can send. Malformed HTTP is refused by the HTTP
# server itself (uvicorn/h11: a plain-text 400, or the connection closed).
RAW = [
    ("chunked over the limit", b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\nAuthorization: " + K.encode()
     + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(b"10000\r\n" + b"x" * 0x10000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n", True),
    ("absurd content-length", b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\nAuthorization: " + K.encode()
     + b"\r\nContent-Length: 99999999999999999999\r\n\r\n" + b"x" * 300_000, False),
    ("content-length not a number", b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", False),
    ("negative content-length", b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", False),
    ("two content-lengths", b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", False),
    ("CR injected in a header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rSet-Cookie: x=1\r\n\r\n", False),
    ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nInjected\r\n\r\n", False),
    ("NUL in a header", b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", False),
    ("1 MiB header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1048576 + b"\r\n\r\n", False),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", False),
    ("bad method token", b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", False),
]


@pytest.fixture
async def token(engine: AsyncEngine) -> str:
    async with engine.begin() as conn:
        _, plain = await create_token(conn, "fuzz", "reader", "default")
    return plain


async def raw_request(url: str, data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body, or None when the server closed the connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, {}, b""
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = b""
        if "content-length" in headers:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        return status, headers, body
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_bad_requests_get_4xx_json_and_store_nothing(receiver: str, engine: AsyncEngine, token: str) -> None:
    assert len(CASES) + len(RAW) >= 30
    expected_dead = 0
    async with httpx.AsyncClient(base_url=receiver, timeout=30) as client:
        for case in CASES:
            headers = {k: v.replace("{token}", token) for k, v in (case.headers or {}).items()}
            r = await client.request(case.method, case.path, content=case.body or None, headers=headers)
            assert 400 <= r.status_code < 500, (case.name, r.status_code, r.text[:200])
            assert r.headers["content-type"] == "application/json", case.name
            err = r.json()
            assert set(err) == {"error", "detail"} and err["error"] and err["detail"], case.name
            assert r.headers["x-request-id"], case.name
            expected_dead += case.dead_letter
            assert (await client.get("/healthz")).status_code == 200, f"the server stopped answering after {case.name}"
        for name, data, dead in RAW:
            status, headers, body = await raw_request(receiver, data)
            assert status is None or 400 <= status < 500, (name, status, body[:200])
            if dead:  # must reach the app: its JSON error and a dead letter
                assert status == 413, name
            if status == 413:  # the app answered (not the HTTP parser): a dead letter was kept
                assert json.loads(body)["error"] == "too_large", name
                expected_dead += 1
            assert (await client.get("/healthz")).status_code == 200, f"the server stopped answering after {name}"
        # A request id that is not well formed is replaced, never echoed.
        r = await client.get("/healthz", headers={"X-Request-ID": "<script>" + "a" * 100})
        assert r.headers["x-request-id"] and "<" not in r.headers["x-request-id"]
    assert await rows(engine, "SELECT 1 FROM callstore.raw_events") == []
    assert await rows(engine, "SELECT 1 FROM callstore.calls") == []
    letters = await rows(engine, "SELECT reason, tenant_id FROM callstore.dead_letters")
    assert len(letters) == expected_dead and {d["tenant_id"] for d in letters} == {"default"}
    assert {d["reason"] for d in letters} >= {"invalid_json", "not_an_object", "missing_call_id", "bad_call_id", "too_large"}


async def test_deep_but_valid_nesting_is_stored_as_sent(receiver: str, engine: AsyncEngine) -> None:
    """Odd but valid JSON is not bad input: the raw body is stored as received."""
    async with httpx.AsyncClient(base_url=receiver, timeout=30) as client:
        r = await client.post("/webhooks/alohub", content=nested(300), headers={"Authorization": K})
    assert r.status_code == 200
    [raw] = await rows(engine, "SELECT body FROM callstore.raw_events")
    assert unpack(raw["body"]) == nested(300)
    assert await rows(engine, "SELECT call_id FROM callstore.calls") == [{"call_id": "deep"}]
