"""The rule and the state machine, as pure functions, and the replay that runs
them over stored calls. The live job and the backtest both call `replay`,
so what the backtest reports is what the job would have done.

    ok / resolved --fire--> pending --fire x (pending_evaluations - 1)--> FIRING (notify)
    pending --no fire--> ok
    firing --clear--> resolving --clear x (clear_evaluations - 1)--> RESOLVED (notify)
    resolving --no clear--> firing
    resolved: cannot fire again until cooldown_minutes after the resolve

`fire` and `clear` are exclusive and leave a band between them (hysteresis):
a rate between the clear threshold and the fire threshold changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from reports.alerts.baseline import Baseline, baseline_spans, wilson_interval
from reports.alerts.figures import CallRow, Figures, QueueCalls, count, load_calls
from reports.alerts.rules import QueueId, Rule, RuleBook

STATES = ("ok", "pending", "firing", "resolving", "resolved")


@dataclass(frozen=True)
class Verdict:
    figures: Figures
    #: None while the history is too thin to trust: the floor alone decides.
    baseline: Baseline | None
    #: Wilson lower bound of the window's abandon rate.
    lower_bound: float
    fire: bool
    clear: bool


def judge(rule: Rule, figures: Figures, baseline_totals: tuple[int, int] | None) -> Verdict:
    """Does the window say "spike" (fire), "back to normal" (clear), or neither?

    `baseline_totals` is (abandoned − short, handled) over the same hour of
    the previous weeks.
    """
    abandoned, handled, rate = figures.abandoned_net, figures.handled, figures.abandon_rate
    lower, _ = wilson_interval(abandoned, handled, rule.confidence)
    baseline = None
    if baseline_totals is not None and baseline_totals[1] >= rule.min_baseline_calls:
        b_abandoned, b_handled = baseline_totals
        baseline = Baseline(b_abandoned, b_handled, wilson_interval(b_abandoned, b_handled, rule.confidence)[1])
    fire = (
        rule.enabled
        and figures.offered >= rule.min_offered
        and abandoned >= rule.min_abandoned
        and rate is not None
        and rate > rule.floor_rate
        and (baseline is None or lower > baseline.upper_bound)
    )
    clear_below = max(rule.clear_rate, baseline.upper_bound if baseline is not None else 0.0)
    clear = not rule.enabled or rate is None or rate < clear_below
    return Verdict(figures, baseline, lower, fire, clear)


@dataclass(frozen=True)
class State:
    state: str = "ok"
    #: Consecutive evaluations the fire (pending) or clear (resolving) condition held.
    streak: int = 0
    since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


def step(rule: Rule, prev: State, verdict: Verdict, at: datetime) -> tuple[State, str | None]:
    """The next state, and "firing" or "resolved" when a notification is due."""
    s = prev.state
    if s in ("ok", "resolved"):
        cooling = prev.resolved_at is not None and at < prev.resolved_at + timedelta(minutes=rule.cooldown_minutes)
        if verdict.fire and not cooling:
            return _toward_firing(rule, prev, 1, at)
        return prev, None
    if s == "pending":
        if verdict.fire:
            return _toward_firing(rule, prev, prev.streak + 1, at)
        return dataclasses.replace(prev, state="ok", streak=0, since=at), None
    if s in ("firing", "resolving"):
        if not verdict.clear:
            if s == "resolving":
                return dataclasses.replace(prev, state="firing", streak=0, since=at), None
            return prev, None
        streak = prev.streak + 1 if s == "resolving" else 1
        if streak >= rule.clear_evaluations:
            return dataclasses.replace(prev, state="resolved", streak=0, since=at, resolved_at=at), "resolved"
        return dataclasses.replace(prev, state="resolving", streak=streak, since=prev.since if s == "resolving" else at), None
    raise ValueError(f"unknown alert state {s!r}")


def _toward_firing(rule: Rule, prev: State, streak: int, at: datetime) -> tuple[State, str | None]:
    if streak >= rule.pending_evaluations:
        return State("firing", 0, at, fired_at=at, resolved_at=prev.resolved_at), "firing"
    since = prev.since if prev.state == "pending" else at
    return State("pending", streak, since, fired_at=prev.fired_at, resolved_at=prev.resolved_at), None


@dataclass(frozen=True)
class Step:
    """One queue at one evaluation time."""

    queue_id: QueueId
    at: datetime
    rule: Rule
    verdict: Verdict
    state: State
    transition: str | None
    #: The window's calls (to list the abandoned callers in a message).
    window: Sequence[CallRow]


async def replay(conn: AsyncConnection, tenant_id: str, zone: ZoneInfo, rules: RuleBook,
                 states: Mapping[QueueId, State], times: Sequence[datetime]) -> tuple[list[Step], dict[QueueId, State]]:
    """Evaluate every queue at each of `times` (ascending), from `states`.

    Reads the calls once for all `times`; everything after that is pure.
    Queues without calls in their window and without a state are skipped:
    evaluating them would change nothing.
    """
    current = dict(states)
    if not times:
        return [], current
    calls = await load_calls(conn, tenant_id, _spans(rules, zone, times[0], times[-1]))
    steps: list[Step] = []
    for at in times:
        queues = set(current)
        for q, found in calls.items():
            if found.window(at, rules.for_queue(q).window_minutes):
                queues.add(q)
        for q in sorted(queues, key=lambda q: -1 if q is None else q):
            rule = rules.for_queue(q)
            qc = calls.get(q)
            window = qc.window(at, rule.window_minutes) if qc is not None else []
            verdict = judge(rule, count(window, at), _baseline_totals(qc, rule, zone, at))
            new, transition = step(rule, current.get(q, State()), verdict, at)
            current[q] = new
            steps.append(Step(q, at, rule, verdict, new, transition, window))
    return steps, current


def _baseline_totals(qc: QueueCalls | None, rule: Rule, zone: ZoneInfo, at: datetime) -> tuple[int, int] | None:
    if rule.baseline_weeks == 0:
        return None
    abandoned = handled = 0
    if qc is not None:
        for lo, hi in baseline_spans(at, rule.window_minutes, rule.baseline_weeks, zone):
            a, h = qc.totals(lo, hi)
            abandoned += a
            handled += h
    return abandoned, handled


def _spans(rules: RuleBook, zone: ZoneInfo, first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    """What `replay` must read: the windows, and the baseline hours of previous weeks."""
    widest = rules.max_window_minutes
    spans = [(first - timedelta(minutes=widest), last)]
    weeks = max([rules.tenant.baseline_weeks, *(q.get("baseline_weeks", 0) for q in rules.queues.values())])
    early = baseline_spans(first, widest, weeks, zone)
    late = baseline_spans(last, 0, weeks, zone)
    spans.extend((lo, hi) for (lo, _), (_, hi) in zip(early, late))
    return spans
