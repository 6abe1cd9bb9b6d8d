"""Slow and excess connections on a real `callstore serve` socket.

A client that sends one header line per second, half a request line, or
nothing at all must not hold its connection beyond the header timeout, and a
normal webhook is answered meanwhile. Beyond the connection cap a new
connection gets a JSON 503 at once; a kept-alive connection serves a bounded
number of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.callstore.test_serve import body, env_for, send
from tests.chaos.service import ServiceProcess

HEADER_TIMEOUT_S = 1


@pytest.fixture
async def service(db_url: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    svc = ServiceProcess(env_for(db_url, tmp_path, CALLSTORE_HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT_S),
                                 CALLSTORE_HTTP_MAX_CONNECTIONS="12", CALLSTORE_HTTP_KEEPALIVE_REQUESTS="3"),
                         tmp_path, role="receiver")
    await svc.start()
    try:
        yield svc
    finally:
        svc.stop()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it was still open after `seconds`."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=0.2)
        except asyncio.TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):  # closed while our own write was in flight
            return received
        if not chunk:
            return received
        received += chunk
    return None


async def test_slow_clients_are_cut_off_and_webhooks_still_answered(service: ServiceProcess) -> None:
    port = service.port
    slow: list[tuple[str, asyncio.StreamReader, asyncio.StreamWriter]] = []
    for kind in ("header-per-second", "header-per-second", "partial-request-line", "silent"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if kind == "partial-request-line":
            writer.write(b"POST /webhooks/al")
        elif kind == "header-per-second":
            writer.write(b"POST /webhooks/alohub HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        slow.append((kind, reader, writer))

    async def drip(writer: asyncio.StreamWriter) -> None:
        for i in range(20):  # at most 20 s; the server must cut it off long before
            await asyncio.sleep(1)
            try:
                writer.write(f"X-Slow-{i}: y\r\n".encode())
                await writer.drain()
            except (ConnectionError, RuntimeError):
                return

    drips = [asyncio.create_task(drip(w)) for kind, _, w in slow if kind == "header-per-second"]
    try:
        # While they hang on, a normal webhook is acknowledged promptly.
        async with httpx.AsyncClient(timeout=1.0) as client:
            assert await send(client, service.url, body(1)) == 200

        for kind, reader, _ in slow:
            sent = await closed_within(reader, HEADER_TIMEOUT_S + 5)
            assert sent is not None, f"{kind}: still open well after the header timeout"
            assert sent == b"" or sent.startswith(b"HTTP/1.1 408"), (kind, sent)
    finally:
        for task in drips:
            task.cancel()
        for _, _, writer in slow:
            writer.close()

    async with httpx.AsyncClient(timeout=5.0) as client:
        assert await send(client, service.url, body(2)) == 200

    # A fast client sending endless headers is refused once they pass 64 KiB.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /webhooks/alohub HTTP/1.1\r\n")
        for i in range(2000):  # 2000 x 100 bytes: well past the cap
            writer.write(f"X-Big-{i:05d}: {'y' * 86}\r\n".encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        sent = await closed_within(reader, 5)
        assert sent is not None and (sent == b"" or sent.startswith(b"HTTP/1.1 431")), sent
    finally:
        writer.close()


async def test_connection_cap_and_requests_per_connection(service: ServiceProcess) -> None:
    # One kept-alive connection: the third response closes it.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    try:
        heads = []
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            heads.append(head.lower())
        assert [b"connection: close" in h for h in heads] == [False, False, True]
        assert await closed_within(reader, 5) == b""
    finally:
        writer.close()

    idle = [await asyncio.open_connection("127.0.0.1", service.port) for _ in range(12)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        sent = await closed_within(reader, 5)
        writer.close()
        assert sent is not None and sent.startswith(b"HTTP/1.1 503"), sent
        head, _, payload = sent.partition(b"\r\n\r\n")
        assert b"retry-after: 1" in head.lower()
        assert json.loads(payload)["error"] == "too_many_connections"
    finally:
        for _, w in idle:
            w.close()
