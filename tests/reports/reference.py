"""An independent reference for the queue metrics (docs/metrics.md): plain Python over call rows, no SQL.

Written from the spec's words, not from the SQL, so that a wrong formula in
either shows up as a difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_SLA, DEFAULT_SHORT = 20, 5


@dataclass(frozen=True)
class Version:
    id: int
    valid_from: datetime | None  # None: all history
    sla: int
    short: int


def thresholds_for(versions: list[Version], started: datetime) -> tuple[int, int]:
    best: Version | None = None
    for v in versions:
        if v.valid_from is None or v.valid_from <= started:
            key = (v.valid_from or datetime.min.replace(tzinfo=started.tzinfo), v.id)
            if best is None or key > (best.valid_from or datetime.min.replace(tzinfo=started.tzinfo), best.id):
                best = v
    return (best.sla, best.short) if best else (DEFAULT_SLA, DEFAULT_SHORT)


def bucket(at: datetime, zone: ZoneInfo, interval: str) -> datetime:
    local = at.astimezone(zone)
    if interval == "15m":
        return at - timedelta(minutes=local.minute % 15, seconds=local.second, microseconds=local.microsecond)
    if interval == "hour":
        return at - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    if interval == "week":  # from Monday, local
        return datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), tzinfo=zone)
    if interval == "month":
        return datetime.combine(local.date().replace(day=1), time(0), tzinfo=zone)
    if interval == "all":  # one bucket for the whole range: the totals
        return datetime.min.replace(tzinfo=zone)
    return datetime.combine(local.date(), time(0), tzinfo=zone)


def secs(a: datetime, b: datetime) -> int:
    return math.floor((a - b).total_seconds())


def reference(
    calls: list[dict[str, Any]], zones: dict[str, ZoneInfo], versions: dict[tuple[str, int | None], list[Version]],
    interval: str, *, all_queues: bool = False,
) -> dict[tuple[str, int | None | str, datetime], dict[str, Any]]:
    """Figures per (tenant, queue, bucket start); with `all_queues`, the queue key is "all"."""
    acc: dict[tuple[str, int | None | str, datetime], dict[str, Any]] = defaultdict(
        lambda: {k: 0 for k in ("offered", "answered", "abandoned", "short_abandoned", "unanswered_other",
                               "in_progress", "answered_within_sla", "abandoned_within_sla")}
        | {"waits": [], "talks": [], "max_wait": None}
    )
    for c in calls:
        if c["direction"] != "inbound" or c["started_at"] is None:
            continue
        tenant, queue, started = c["tenant_id"], c["queue_id"], c["started_at"]
        sla, short = thresholds_for(versions.get((tenant, queue), []), started)
        b = acc[(tenant, "all" if all_queues else queue, bucket(started, zones[tenant], interval))]
        b["offered"] += 1
        answered = c["answered_at"] is not None or (c["call_status"] or "").lower() == "answered"
        ended = c["ended_at"] is not None
        if answered:
            wait = secs(c["answered_at"], started) if c["answered_at"] is not None else None
        elif ended:
            wait = secs(c["ended_at"], started)
        else:
            wait = None
        if answered:
            b["answered"] += 1
            if wait is not None:
                b["waits"].append(wait)
                if wait <= sla:
                    b["answered_within_sla"] += 1
            if c["answered_at"] is not None and ended:
                b["talks"].append(secs(c["ended_at"], c["answered_at"]))
        elif not ended:
            b["in_progress"] += 1
        elif c["hangup_by"] == "customer":
            b["abandoned"] += 1
            if wait < short:
                b["short_abandoned"] += 1
            if wait <= sla:
                b["abandoned_within_sla"] += 1
        else:
            b["unanswered_other"] += 1
        if wait is not None and (answered or (ended and c["hangup_by"] == "customer")):
            b["max_wait"] = wait if b["max_wait"] is None else max(b["max_wait"], wait)

    def ratio(n: float, d: float) -> float | None:
        return None if d == 0 else n / d

    out = {}
    for key, b in acc.items():
        handled = b["answered"] + b["abandoned"] + b["unanswered_other"] - b["short_abandoned"]
        out[key] = {
            **{k: b[k] for k in ("offered", "answered", "abandoned", "short_abandoned", "unanswered_other",
                                 "in_progress", "answered_within_sla", "abandoned_within_sla")},
            "service_level": ratio(b["answered_within_sla"], handled),
            "service_level_answered": ratio(b["answered_within_sla"], b["answered"]),
            "service_level_abandon_ok": ratio(b["answered_within_sla"] + b["abandoned_within_sla"],
                                              b["answered"] + b["abandoned"]),
            "abandon_rate": ratio(b["abandoned"] - b["short_abandoned"], handled),
            "asa_seconds": ratio(sum(b["waits"]), len(b["waits"])),
            "aht_seconds": ratio(sum(b["talks"]), len(b["talks"])),
            "max_wait_seconds": b["max_wait"],
            "wait_answered_count": len(b["waits"]), "wait_answered_sum": sum(b["waits"]),
            "talk_count": len(b["talks"]), "talk_sum": sum(b["talks"]),
        }
    return out


def agent_reference(calls: list[dict[str, Any]], zones: dict[str, ZoneInfo]) -> dict[tuple[str, str, date], dict[str, Any]]:
    """Per tenant, agent and local day of the start: answered (inbound), outbound, talk, hold, aht.

    Talk and aht count the agent's answered calls of both directions that
    have an answer and an end time; hold counts every call.
    """
    acc: dict[tuple[str, str, date], dict[str, Any]] = defaultdict(
        lambda: {"answered": 0, "outbound": 0, "hold_seconds": 0, "talks": []})
    for c in calls:
        if c["agent"] is None or c["started_at"] is None:
            continue
        b = acc[(c["tenant_id"], c["agent"], c["started_at"].astimezone(zones[c["tenant_id"]]).date())]
        answered = c["answered_at"] is not None or (c["call_status"] or "").lower() == "answered"
        if c["direction"] == "inbound" and answered:
            b["answered"] += 1
        if c["direction"] == "outbound":
            b["outbound"] += 1
        if answered and c["answered_at"] is not None and c["ended_at"] is not None:
            b["talks"].append(secs(c["ended_at"], c["answered_at"]))
        b["hold_seconds"] += c["hold_seconds"] or 0
    return {
        key: {"answered": b["answered"], "outbound": b["outbound"], "talk_seconds": sum(b["talks"]),
              "hold_seconds": b["hold_seconds"],
              "aht_seconds": sum(b["talks"]) / len(b["talks"]) if b["talks"] else None}
        for key, b in acc.items()
    }
