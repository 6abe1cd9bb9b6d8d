"""A realistic mix of raw deliveries: webhook partials and finals, some delivered twice,
and the history API's record of most calls, received over several months."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from sync.fake.history import generate_calls, webhook_events

MEDIA = "http://127.0.0.1:8081"


def deliveries(delivery_type: Any, tenant_id: str, n: int, *, seed: int, first: datetime, days: int) -> list[Any]:
    """`n` calls received between `first` and `days` days later; `delivery_type` is the
    Delivery class of the write path under test (the current one or a frozen older one)."""
    rng = random.Random(seed)
    calls = generate_calls(n, seed=seed, start=first, end=first + timedelta(days=days))
    out = []
    for i, call in enumerate(calls):
        received = first + timedelta(seconds=days * 86400 * i / max(n, 1))
        for j, event in enumerate(webhook_events(call, MEDIA)):
            at = received + timedelta(minutes=j)
            out.append(delivery_type(tenant_id, call.call_id, "webhook", event, at))
            if rng.random() < 0.1:  # Alohub delivered it again
                out.append(delivery_type(tenant_id, call.call_id, "webhook", event, at + timedelta(seconds=30)))
        if rng.random() < 0.8:  # the backfill's record, a day later (maybe in the next month)
            out.append(delivery_type(tenant_id, call.call_id, "history", call.as_record(), received + timedelta(days=1)))
    return out


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]
