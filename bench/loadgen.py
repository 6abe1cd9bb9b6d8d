"""A small HTTP/1.1 load generator (asyncio, keep-alive, raw sockets).

Two modes: `max` (C connections as fast as they go, closed loop) and `rate`
(open loop: requests are due at a fixed rate and latency is measured from the
time each was due, so a stalled server cannot hide its queueing delay).
Prints one JSON object. Only ever pointed at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

TEMPLATE = (
    '{{"call_id":"{cid}","call_status":"answered","direction":"inbound","caller_number":"09{n:08d}",'
    '"destination_number":"888","starttime":"2026-11-20 09:00:{s:02d}","answertime":"2026-11-20 09:00:{a:02d}",'
    '"endtime":"2026-11-20 09:05:30","hangup_by":"customer","hotline":"19001234","total_duration":"300",'
    '"holding_duration":"0","recording_url":"https://media.example/IPCCMedia/MP3Export.do?url={cid}.mp3&source=ipcc",'
    '"objectId":1,"transactionID":"T{n}","userName":"agent{q}","eventType":"call"}}'
)


def request_bytes(path: str, key: str, n: int, run: str) -> bytes:
    body = TEMPLATE.format(cid=f"{run}-{n}", n=n, s=n % 50, a=n % 50 + 5, q=n % 40).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/webhooks/alohub")
    ap.add_argument("--key", default="bench-webhook-key")
    ap.add_argument("--mode", choices=("max", "rate"), default="max")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--run", default="r")
    args = ap.parse_args()

    counter = itertools.count()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.perf_counter() + args.duration
    tickets: asyncio.Queue[float] = asyncio.Queue()

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while True:
                if args.mode == "rate":
                    due = await tickets.get()
                    if due < 0:
                        return
                else:
                    due = time.perf_counter()
                    if due >= deadline:
                        return
                try:
                    status = await one(reader, writer, request_bytes(args.path, args.key, next(counter), args.run))
                except (ConnectionError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
                    continue
                latencies.append(time.perf_counter() - due)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def ticker() -> None:
        start = time.perf_counter()
        i = 0
        while True:
            due = start + i / args.rate
            if due >= deadline:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            tickets.put_nowait(due)
            i += 1
        for _ in range(args.connections):
            tickets.put_nowait(-1.0)

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(args.connections)]
    if args.mode == "rate":
        tasks.append(asyncio.create_task(ticker()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    print(json.dumps({
        "mode": args.mode, "connections": args.connections, "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0, "statuses": statuses, "errors": errors,
    }))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
