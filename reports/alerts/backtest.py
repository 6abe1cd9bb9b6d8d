"""The rules replayed over stored history, without writing or notifying.

Uses `replay`, the very function the live job runs, one day of evaluation
minutes at a time (bounded memory), from every queue "ok" at the start.
Like the live job, it evaluates no minute after now: a range that ends in
the future stops at the current minute (the calls of the future are not
known, and an empty future window would "resolve" every alert).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from reports.alerts.evaluate import State, Step, replay
from reports.alerts.rules import QueueId, check_rule, load_rules
from reports.alerts.state import minute
from store.settings import TenantSettings

CHUNK = timedelta(days=1)


def evaluation_times(start: datetime, end: datetime) -> list[datetime]:
    """Every whole minute t with start <= t < end (the job evaluates on whole minutes)."""
    t = minute(start)
    if t < start:
        t += timedelta(minutes=1)
    out = []
    while t < end:
        out.append(t)
        t += timedelta(minutes=1)
    return out


async def backtest(conn: AsyncConnection, tenant: TenantSettings, start: datetime, end: datetime,
                   overrides: Mapping[str, Any] | None = None, now: datetime | None = None) -> list[Step]:
    """Transitions ("firing", "resolved") the rules would have made in [start, min(end, now)]."""
    rules = await load_rules(conn, tenant.tenant_id)
    if overrides:
        rules = rules.with_overrides(overrides)
        check_rule(rules.tenant)
    states: dict[QueueId, State] = {}
    transitions: list[Step] = []
    times = evaluation_times(start, min(end, until(now)))
    per_chunk = int(CHUNK / timedelta(minutes=1))
    for i in range(0, len(times), per_chunk):
        steps, states = await replay(conn, tenant.tenant_id, tenant.zone, rules, states, times[i:i + per_chunk])
        transitions.extend(s for s in steps if s.transition is not None)
    return transitions


def until(now: datetime | None = None) -> datetime:
    """The exclusive end of what can be evaluated: just after `now` (default: the clock)."""
    return (now or datetime.now(timezone.utc)) + timedelta(microseconds=1)
