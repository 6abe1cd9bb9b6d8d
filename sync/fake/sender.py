"""Plays Alohub's webhook: POSTs call events to a receiver, with loss, repeats and disorder.

Only connection failures are retried (refused, reset, closed before an
answer); an HTTP status, 503 included, is final for that delivery, since
Alohub's retry policy is unpublished and a receiver must not rely on one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import orjson

from sync.fake.history import FakeCall, webhook_events

Event = dict[str, object]

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass
class SendReport:
    """What a `send_events` run did.

    `sent` counts HTTP answers of any status; `acknowledged` holds the events
    answered 200 (a duplicate appears once per acknowledged delivery);
    `unacknowledged` those answered otherwise or timed out; `gave_up` those
    never answered because of connection errors or the deadline.
    """

    sent: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    acknowledged: list[Event] = field(default_factory=list)
    unacknowledged: list[Event] = field(default_factory=list)
    gave_up: list[Event] = field(default_factory=list)
    dropped_call_ids: list[str] = field(default_factory=list)
    duplicated: int = 0
    calls_out_of_order: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.status_counts[200]

    @property
    def unavailable(self) -> int:
        return self.status_counts[503]

    @property
    def other(self) -> int:
        return self.sent - self.ok - self.unavailable

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "acknowledged": len(self.acknowledged),
            "unacknowledged": len(self.unacknowledged),
            "gave_up": len(self.gave_up),
            "dropped_calls": len(self.dropped_call_ids),
            "duplicated": self.duplicated,
            "calls_out_of_order": self.calls_out_of_order,
            "connection_errors": self.connection_errors,
            "timeouts": self.timeouts,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(frozen=True)
class Plan:
    """The deliveries to make, in order, and what was done to get them."""

    deliveries: list[Event]
    dropped_call_ids: list[str]
    duplicated: int
    calls_out_of_order: int


def events_for(calls: Iterable[FakeCall], media_base: str) -> list[Event]:
    """Every webhook event of `calls`, call by call, each call's events in their natural order."""
    return [event for call in calls for event in webhook_events(call, media_base)]


def plan_deliveries(
    events: list[Event], *, drop: float, duplicate: float, reorder: bool, seed: int, window: int = 16
) -> Plan:
    """Drop whole calls, repeat events, and shuffle within a sliding `window` of positions."""
    rng = random.Random(seed)
    by_call: dict[str, list[int]] = {}
    for position, event in enumerate(events):
        by_call.setdefault(str(event.get("call_id", "")), []).append(position)
    dropped = [call_id for call_id in by_call if drop and rng.random() < drop]
    dropped_set = set(dropped)
    keyed: list[tuple[float, int, Event]] = []
    duplicated = 0
    for position, event in enumerate(events):
        if str(event.get("call_id", "")) in dropped_set:
            continue
        keyed.append((position + (rng.uniform(0, window) if reorder else 0.0), position, event))
        if duplicate and rng.random() < duplicate:
            duplicated += 1
            keyed.append((position + rng.uniform(0, window) if reorder else position + 0.5, position, event))
    keyed.sort(key=lambda item: (item[0], item[1]))
    seen: dict[str, int] = {}
    out_of_order: set[str] = set()
    for _, position, event in keyed:
        call_id = str(event.get("call_id", ""))
        if position < seen.get(call_id, -1):
            out_of_order.add(call_id)
        seen[call_id] = max(position, seen.get(call_id, -1))
    return Plan([item[2] for item in keyed], dropped, duplicated, len(out_of_order))


async def send_events(
    url: str,
    key: str,
    events: list[Event],
    *,
    concurrency: int = 8,
    drop: float = 0.0,
    duplicate: float = 0.0,
    reorder: bool = True,
    seed: int = 0,
    retry_connect_errors: bool = True,
    deadline_s: float = 300,
    max_attempts: int = 8,
    timeout_s: float = 10.0,
    report: SendReport | None = None,
) -> SendReport:
    """POST `events` to `url` with ``Authorization: key`` as Alohub's webhook would.

    Pass a fresh `report` to watch it fill while the events are sent (a chaos
    test acts on the number acknowledged so far); it is also returned.
    """
    for name, rate in (("drop", drop), ("duplicate", duplicate)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    if concurrency < 1 or max_attempts < 1:
        raise ValueError("concurrency and max_attempts must be at least 1")
    plan = plan_deliveries(events, drop=drop, duplicate=duplicate, reorder=reorder, seed=seed)
    report = report if report is not None else SendReport()
    report.dropped_call_ids = plan.dropped_call_ids
    report.duplicated = plan.duplicated
    report.calls_out_of_order = plan.calls_out_of_order
    started = time.monotonic()
    deadline = started + deadline_s
    headers = {"Authorization": key, "Content-Type": "application/json"}
    pending = iter(plan.deliveries)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def deliver(client: httpx.AsyncClient, event: Event) -> None:
        body = orjson.dumps(event)
        for attempt in range(1, max_attempts + 1):
            if time.monotonic() >= deadline:
                break
            try:
                response = await client.post(url, content=body, headers=headers)
            except CONNECTION_ERRORS:
                report.connection_errors += 1
                backoff = min(1.0, 0.05 * 2 ** (attempt - 1))
                if not retry_connect_errors or time.monotonic() + backoff >= deadline:
                    break
                await asyncio.sleep(backoff)
                continue
            except httpx.TimeoutException:
                report.timeouts += 1
                report.unacknowledged.append(event)
                return
            report.sent += 1
            report.status_counts[response.status_code] += 1
            (report.acknowledged if response.status_code == 200 else report.unacknowledged).append(event)
            return
        report.gave_up.append(event)

    async def worker(client: httpx.AsyncClient) -> None:
        for event in pending:
            await deliver(client, event)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    report.elapsed_s = time.monotonic() - started
    return report
