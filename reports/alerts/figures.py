"""The calls an evaluation looks at, read from callstore.calls and counted per queue.

Outcomes come from the shared SQL functions (callstore.wait_seconds,
callstore.call_outcome, callstore.short_abandon_seconds), never
redefined here. Each call also carries `known_at`, the moment its outcome
became known (answer or end). An evaluation at time t counts a call whose
outcome is known only after t as in progress, so replaying history at t
(the backtest) sees what the live evaluation saw at t.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.alerts.rules import QueueId

_CALLS = text(
    """
    SELECT c.queue_id, c.call_id, c.caller_number, c.started_at, o.outcome, w.wait_seconds,
           CASE o.outcome WHEN 'in_progress' THEN NULL
                          WHEN 'answered' THEN coalesce(c.answered_at, c.ended_at, c.started_at)
                          ELSE c.ended_at END AS known_at
    FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS r(lo, hi)
    JOIN callstore.calls c
      ON c.tenant_id = :tenant AND c.direction = 'inbound' AND c.started_at >= r.lo AND c.started_at < r.hi
    CROSS JOIN LATERAL (SELECT callstore.wait_seconds(c.started_at, c.answered_at, c.ended_at, c.call_status)
                               AS wait_seconds) w
    CROSS JOIN LATERAL (SELECT callstore.call_outcome(
                                   c.direction, c.answered_at, c.ended_at, c.call_status, c.hangup_by, w.wait_seconds,
                                   callstore.short_abandon_seconds(c.tenant_id, c.queue_id, c.started_at)) AS outcome) o
    WHERE NOT :one_queue OR c.queue_id IS NOT DISTINCT FROM :queue
    ORDER BY c.started_at, c.call_id
    """
)


@dataclass(frozen=True)
class CallRow:
    queue_id: QueueId
    call_id: str
    caller_number: str | None
    started_at: datetime
    outcome: str
    wait_seconds: int | None
    known_at: datetime | None

    def outcome_at(self, at: datetime) -> str:
        return self.outcome if self.known_at is not None and self.known_at <= at else "in_progress"


@dataclass(frozen=True)
class Figures:
    """Counts of one queue over one window (abandoned includes short abandons)."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    unanswered_other: int = 0
    in_progress: int = 0

    @property
    def abandoned_net(self) -> int:
        return self.abandoned - self.short_abandoned

    @property
    def handled(self) -> int:
        """The abandon rate's denominator: answered + abandoned + unanswered_other − short_abandoned."""
        return self.answered + self.abandoned + self.unanswered_other - self.short_abandoned

    @property
    def abandon_rate(self) -> float | None:
        """The abandon rate: (abandoned − short_abandoned) / handled; None when nothing was handled."""
        return self.abandoned_net / self.handled if self.handled else None

    def reportable_rate(self, min_offered: int) -> float | None:
        """The abandon rate, or None when fewer than `min_offered` calls were offered.

        A window of one or two calls has a rate of 0 % or 100 %, which says
        nothing about the queue: the figures an alert keeps (its peak, its
        rate at the resolve) leave such windows out, as firing does.
        """
        return self.abandon_rate if self.offered >= min_offered else None


def count(rows: Iterable[CallRow], at: datetime) -> Figures:
    n = {"answered": 0, "abandoned": 0, "short_abandoned": 0, "unanswered_other": 0, "in_progress": 0}
    offered = 0
    for row in rows:
        offered += 1
        n[row.outcome_at(at)] += 1
    return Figures(offered, n["answered"], n["abandoned"] + n["short_abandoned"], n["short_abandoned"],
                   n["unanswered_other"], n["in_progress"])


class QueueCalls:
    """One queue's calls, sorted by start, with running sums for the baseline."""

    def __init__(self, rows: Sequence[CallRow]) -> None:
        self.rows = list(rows)
        self.starts = [r.started_at for r in self.rows]
        self._abandoned = [0]
        self._handled = [0]
        for r in self.rows:
            self._abandoned.append(self._abandoned[-1] + (r.outcome == "abandoned"))
            self._handled.append(self._handled[-1] + (r.outcome in ("answered", "abandoned", "unanswered_other")))

    def between(self, lo: datetime, hi: datetime) -> list[CallRow]:
        return self.rows[bisect.bisect_left(self.starts, lo):bisect.bisect_left(self.starts, hi)]

    def window(self, at: datetime, minutes: int) -> list[CallRow]:
        return self.between(at - timedelta(minutes=minutes), at)

    def totals(self, lo: datetime, hi: datetime) -> tuple[int, int]:
        """(abandoned − short, handled) of the calls started in [lo, hi), final outcomes."""
        i, j = bisect.bisect_left(self.starts, lo), bisect.bisect_left(self.starts, hi)
        return self._abandoned[j] - self._abandoned[i], self._handled[j] - self._handled[i]


def merge_spans(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


async def load_calls(conn: AsyncConnection, tenant_id: str, spans: Iterable[tuple[datetime, datetime]],
                     queue: QueueId | str = "all") -> dict[QueueId, QueueCalls]:
    """Inbound calls of the tenant that started in any of `spans`, per queue."""
    merged = merge_spans(spans)
    by_queue: dict[QueueId, list[CallRow]] = {}
    if not merged:
        return {}
    result = await conn.execute(_CALLS, {
        "tenant": tenant_id, "lo": [s[0] for s in merged], "hi": [s[1] for s in merged],
        "one_queue": queue != "all", "queue": None if queue == "all" else queue,
    })
    for r in result:
        by_queue.setdefault(r.queue_id, []).append(
            CallRow(r.queue_id, r.call_id, r.caller_number, r.started_at, r.outcome, r.wait_seconds, r.known_at))
    return {q: QueueCalls(rows) for q, rows in by_queue.items()}


async def abandoned_callers(conn: AsyncConnection, tenant_id: str, queue_id: QueueId,
                            lo: datetime, hi: datetime, at: datetime) -> list[CallRow]:
    """Calls of the queue started in [lo, hi) that were abandoned (not short) by `at`: the callback list."""
    calls = await load_calls(conn, tenant_id, [(lo, hi)], queue=queue_id)
    rows = calls[queue_id].rows if queue_id in calls else []
    return [r for r in rows if r.outcome_at(at) == "abandoned"]
