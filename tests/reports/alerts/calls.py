"""Generated call history for the alert tests, written straight into callstore.calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class Call:
    call_id: str
    queue_id: int | None
    started_at: datetime
    outcome: str  # answered | abandoned | short_abandoned | unanswered_other | in_progress
    wait: int = 10
    caller: str = "+84900000000"
    tenant_id: str = "default"

    def row(self) -> dict[str, object]:
        answered = self.started_at + timedelta(seconds=self.wait) if self.outcome == "answered" else None
        if self.outcome == "answered":
            ended: datetime | None = self.started_at + timedelta(seconds=self.wait + 90)
        elif self.outcome == "in_progress":
            ended = None
        else:
            ended = self.started_at + timedelta(seconds=self.wait)
        hangup = "customer" if self.outcome in ("abandoned", "short_abandoned") else "system"
        return {"tenant_id": self.tenant_id, "call_id": self.call_id, "queue_id": self.queue_id,
                "started_at": self.started_at, "answered_at": answered, "ended_at": ended,
                "hangup_by": hangup if ended else None, "caller_number": self.caller,
                "call_status": "answered" if answered else ("missed" if ended else None)}


async def insert_calls(engine: AsyncEngine, calls: list[Call]) -> None:
    rows = [c.row() for c in calls]
    cols = ["tenant_id", "call_id", "queue_id", "started_at", "answered_at", "ended_at", "hangup_by",
            "caller_number", "call_status"]
    types = {"queue_id": "bigint", "started_at": "timestamptz", "answered_at": "timestamptz", "ended_at": "timestamptz"}
    async with engine.begin() as conn:
        await conn.execute(
            text(f"""
                INSERT INTO callstore.calls ({", ".join(cols)}, direction, first_source)
                SELECT u.*, 'inbound', 'history'
                FROM unnest({", ".join(f"CAST(:{c} AS {types.get(c, 'text')}[])" for c in cols)}) AS u({", ".join(cols)})
            """),
            {c: [r[c] for r in rows] for c in cols},
        )


def steady(prefix: str, queue_id: int | None, start: datetime, end: datetime, per_minute: int,
           abandon_every: int) -> list[Call]:
    """Regular traffic: `per_minute` calls a minute, one in `abandon_every` abandoned after 40 s."""
    calls, i, t = [], 0, start
    step = timedelta(seconds=60 / per_minute)
    while t < end:
        outcome = "abandoned" if i % abandon_every == abandon_every - 1 else "answered"
        calls.append(Call(f"{prefix}-{i}", queue_id, t, outcome, 40 if outcome == "abandoned" else 10,
                          caller=f"+8490{abs(hash(prefix)) % 1000:03d}{i:05d}"))
        i += 1
        t += step
    return calls
