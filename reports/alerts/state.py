"""Alert state, history and evaluation cursor in Postgres (nothing in memory: any replica may run the job).

`evaluate_tenant` is one transaction: it reads the previous states, replays
the minutes not yet evaluated (reports/alerts/evaluate.py), and writes the new
states, the alert history and the outbox rows together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.alerts.evaluate import State, Step, replay
from reports.alerts.figures import abandoned_callers
from reports.alerts.message import alert_payload
from reports.alerts.outbox import enqueue
from reports.alerts.rules import QueueId, ensure_default_rules, load_rules
from store.locks import hold
from store.settings import TenantSettings

#: Minutes missed (scheduler down, database down) that a run catches up on;
#: past that, evaluation resumes at the current minute.
MAX_CATCH_UP = 30


@dataclass
class Stored:
    id: int | None
    state: State
    alert_id: int | None


def minute(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(second=0, microsecond=0)


async def load_states(conn: AsyncConnection, tenant_id: str) -> dict[QueueId, Stored]:
    rows = await conn.execute(
        text("SELECT id, queue_id, state, streak, since, fired_at, resolved_at, alert_id "
             "FROM callstore.alert_states WHERE tenant_id = :t"), {"t": tenant_id})
    return {r.queue_id: Stored(r.id, State(r.state, r.streak, r.since, r.fired_at, r.resolved_at), r.alert_id)
            for r in rows}


@dataclass
class Evaluated:
    times: list[datetime]
    transitions: list[Step]


async def evaluate_tenant(conn: AsyncConnection, tenant: TenantSettings, now: datetime,
                          notifiers: Sequence[str]) -> Evaluated:
    """Evaluate the minutes up to `now` not evaluated yet, in the caller's transaction."""
    await hold(conn, f"alerts:{tenant.tenant_id}")
    at = minute(now)
    last = await conn.scalar(text("SELECT evaluated_at FROM callstore.alert_cursors WHERE tenant_id = :t"),
                             {"t": tenant.tenant_id})
    if last is not None and last >= at:
        return Evaluated([], [])
    first = at if last is None else max(last + timedelta(minutes=1), at - timedelta(minutes=MAX_CATCH_UP - 1))
    times = [first + timedelta(minutes=i) for i in range(int((at - first) / timedelta(minutes=1)) + 1)]

    await ensure_default_rules(conn, [tenant.tenant_id])
    rules = await load_rules(conn, tenant.tenant_id)
    stored = await load_states(conn, tenant.tenant_id)
    steps, _ = await replay(conn, tenant.tenant_id, tenant.zone, rules, {q: s.state for q, s in stored.items()}, times)

    transitions = [s for s in steps if s.transition is not None]
    names = await _queue_names(conn, tenant.tenant_id, {s.queue_id for s in transitions})
    alert_ids = {q: s.alert_id for q, s in stored.items()}
    peaks: dict[QueueId, float] = {}
    last_step: dict[QueueId, Step] = {}
    for s in steps:
        last_step[s.queue_id] = s
        if s.transition == "firing":
            alert_ids[s.queue_id] = await _open_alert(conn, tenant, s, names.get(s.queue_id), notifiers)
        elif s.transition == "resolved" and alert_ids.get(s.queue_id) is not None:
            await _close_alert(conn, tenant, s, names.get(s.queue_id), alert_ids[s.queue_id], notifiers)  # type: ignore[arg-type]
        rate = s.verdict.figures.reportable_rate(s.rule.min_offered)
        if s.state.state in ("firing", "resolving") and rate is not None:
            peaks[s.queue_id] = max(rate, peaks.get(s.queue_id, 0.0))
    for q, peak in peaks.items():
        await conn.execute(
            text("UPDATE callstore.alerts SET peak_abandon_rate = greatest(peak_abandon_rate, :p) "
                 "WHERE tenant_id = :t AND id = :id"),
            {"t": tenant.tenant_id, "p": peak, "id": alert_ids[q]})
    for q, s in last_step.items():
        await _save_state(conn, tenant.tenant_id, stored.get(q), s, alert_ids.get(q))
    await conn.execute(
        text("INSERT INTO callstore.alert_cursors (tenant_id, evaluated_at) VALUES (:t, :at) "
             "ON CONFLICT (tenant_id) DO UPDATE SET evaluated_at = excluded.evaluated_at"),
        {"t": tenant.tenant_id, "at": at})
    return Evaluated(times, transitions)


async def _queue_names(conn: AsyncConnection, tenant_id: str, queues: set[QueueId]) -> dict[QueueId, str]:
    ids = [q for q in queues if q is not None]
    if not ids:
        return {}
    rows = await conn.execute(
        text("SELECT queue_id, name FROM callstore.queues WHERE tenant_id = :t AND queue_id = ANY(CAST(:q AS bigint[]))"),
        {"t": tenant_id, "q": ids})
    return {r.queue_id: r.name for r in rows if r.name}


async def _open_alert(conn: AsyncConnection, tenant: TenantSettings, s: Step, name: str | None,
                      notifiers: Sequence[str]) -> int:
    v, f = s.verdict, s.verdict.figures
    alert_id: int = await conn.scalar(
        text("""
            INSERT INTO callstore.alerts (tenant_id, queue_id, fired_at, window_minutes, offered, answered, abandoned,
                short_abandoned, unanswered_other, abandon_rate, rate_lower_bound, baseline_rate, baseline_upper_bound,
                baseline_calls, peak_abandon_rate, rule)
            VALUES (:t, :q, :at, :w, :offered, :answered, :abandoned, :short, :other, :rate, :lower, :brate, :bupper,
                :bcalls, :rate, CAST(:rule AS jsonb))
            RETURNING id
        """),
        {"t": tenant.tenant_id, "q": s.queue_id, "at": s.at, "w": s.rule.window_minutes, "offered": f.offered,
         "answered": f.answered, "abandoned": f.abandoned, "short": f.short_abandoned, "other": f.unanswered_other,
         "rate": f.abandon_rate, "lower": v.lower_bound,
         "brate": v.baseline.rate if v.baseline else None, "bupper": v.baseline.upper_bound if v.baseline else None,
         "bcalls": v.baseline.handled if v.baseline else None, "rule": orjson.dumps(s.rule.as_dict()).decode()})
    callers = [c for c in s.window if c.outcome_at(s.at) == "abandoned"]
    since = s.at - timedelta(minutes=s.rule.window_minutes)
    payload = alert_payload("firing", tenant.tenant_id, tenant.zone, s, name, alert_id, callers, since)
    await enqueue(conn, tenant.tenant_id, alert_id, "firing", f"alert_{alert_id}_firing", payload, notifiers)
    return alert_id


async def _close_alert(conn: AsyncConnection, tenant: TenantSettings, s: Step, name: str | None, alert_id: int,
                       notifiers: Sequence[str]) -> None:
    await conn.execute(
        text("UPDATE callstore.alerts SET resolved_at = :at, resolve_abandon_rate = :rate "
             "WHERE tenant_id = :t AND id = :id"),
        {"t": tenant.tenant_id, "at": s.at, "rate": s.verdict.figures.reportable_rate(s.rule.min_offered),
         "id": alert_id})
    # Everyone who gave up from the window that fired the alert until now: the full callback list.
    fired = s.state.fired_at or s.at
    since = fired - timedelta(minutes=s.rule.window_minutes)
    callers = await abandoned_callers(conn, tenant.tenant_id, s.queue_id, since, s.at, s.at)
    payload = alert_payload("resolved", tenant.tenant_id, tenant.zone, s, name, alert_id, callers, since)
    await enqueue(conn, tenant.tenant_id, alert_id, "resolved", f"alert_{alert_id}_resolved", payload, notifiers)


async def _save_state(conn: AsyncConnection, tenant_id: str, stored: Stored | None, s: Step,
                      alert_id: int | None) -> None:
    v, f, st = s.verdict, s.verdict.figures, s.state
    values = {
        "t": tenant_id, "q": s.queue_id, "state": st.state, "streak": st.streak, "since": st.since,
        "fired_at": st.fired_at, "resolved_at": st.resolved_at,
        "alert_id": alert_id if st.state in ("firing", "resolving", "resolved") else None,
        "at": s.at, "w": s.rule.window_minutes, "offered": f.offered, "abandoned": f.abandoned,
        "short": f.short_abandoned, "handled": f.handled, "rate": f.abandon_rate, "lower": v.lower_bound,
        "brate": v.baseline.rate if v.baseline else None, "bupper": v.baseline.upper_bound if v.baseline else None,
    }
    if stored is None or stored.id is None:
        await conn.execute(text("""
            INSERT INTO callstore.alert_states (tenant_id, queue_id, state, streak, since, fired_at, resolved_at,
                alert_id, evaluated_at, window_minutes, offered, abandoned, short_abandoned, handled, abandon_rate,
                rate_lower_bound, baseline_rate, baseline_upper_bound)
            VALUES (:t, :q, :state, :streak, :since, :fired_at, :resolved_at, :alert_id, :at, :w, :offered,
                :abandoned, :short, :handled, :rate, :lower, :brate, :bupper)
        """), values)
    else:
        await conn.execute(text("""
            UPDATE callstore.alert_states SET state = :state, streak = :streak, since = :since, fired_at = :fired_at,
                resolved_at = :resolved_at, alert_id = :alert_id, evaluated_at = :at, window_minutes = :w,
                offered = :offered, abandoned = :abandoned, short_abandoned = :short, handled = :handled,
                abandon_rate = :rate, rate_lower_bound = :lower, baseline_rate = :brate,
                baseline_upper_bound = :bupper, updated_at = now()
            WHERE tenant_id = :t AND id = :id AND queue_id IS NOT DISTINCT FROM :q
        """), {**values, "id": stored.id})
