"""The rule and the state machine as pure functions: no database needed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from reports.alerts.evaluate import State, judge, step
from reports.alerts.figures import Figures
from reports.alerts.rules import Rule

RULE = Rule()
T = datetime(2026, 11, 16, 2, 0, tzinfo=timezone.utc)


def window(abandoned: int, handled: int, short: int = 0) -> Figures:
    return Figures(offered=handled + short, answered=handled - abandoned, abandoned=abandoned + short,
                   short_abandoned=short)


def run(rule: Rule, figures: list[Figures], baseline: tuple[int, int] | None = None) -> tuple[list[str], list[tuple[int, str]]]:
    state, states, transitions = State(), [], []
    for i, f in enumerate(figures):
        state, transition = step(rule, state, judge(rule, f, baseline), T + timedelta(minutes=i))
        states.append(state.state)
        if transition:
            transitions.append((i, transition))
    return states, transitions


def test_a_quiet_queue_does_not_fire() -> None:
    v = judge(RULE, window(1, 2), None)
    assert v.figures.abandon_rate == 0.5 and not v.fire
    assert not judge(RULE, window(4, 9), None).fire  # 44 %, but fewer than 10 offered
    assert not judge(RULE, Figures(offered=12, answered=8, abandoned=4), None).fire  # < 5 abandoned
    assert judge(RULE, window(5, 12), None).fire


def test_short_abandons_do_not_count() -> None:
    # 12 offered, 8 hung up within 5 s: that is not 8 abandoned callers.
    f = window(abandoned=2, handled=4, short=8)
    assert f.offered == 12 and f.abandoned == 10 and f.abandoned_net == 2 and f.abandon_rate == 0.5
    assert not judge(RULE, f, None).fire


def test_baseline_needs_a_significant_excess() -> None:
    usual = (100, 400)  # 25 % abandoned at this hour, every week
    assert not judge(RULE, window(9, 30), usual).fire  # 30 %: above the floor, not above normal
    v = judge(RULE, window(18, 30), usual)  # 60 %
    assert v.fire and v.lower_bound > v.baseline.upper_bound  # type: ignore[union-attr]
    # Too little history: the floor alone decides.
    thin = judge(RULE, window(9, 30), (10, 39))
    assert thin.baseline is None and thin.fire


def test_pending_twice_then_fires_then_resolves_with_hysteresis() -> None:
    spike, high, low = window(10, 20), window(5, 20), window(1, 20)  # 50 %, 25 %, 5 %
    states, transitions = run(RULE, [low, spike, spike, spike, high, high, low, high, low, low, low])
    assert states == ["ok", "pending", "firing", "firing", "firing", "firing", "resolving", "firing",
                      "resolving", "resolved", "resolved"]
    assert transitions == [(2, "firing"), (9, "resolved")]


def test_a_rate_oscillating_around_the_threshold_does_not_flap() -> None:
    above, below = window(9, 40), window(7, 40)  # 22.5 % and 17.5 % around the 20 % floor
    # Flipping every evaluation never holds for two: nothing fires.
    assert run(RULE, [above, below] * 30)[1] == []
    # Slower waves fire once, then stay firing: 17.5 % is not "back to normal" (< 10 %).
    states, transitions = run(RULE, ([above] * 3 + [below] * 3) * 10)
    assert transitions == [(1, "firing")]
    assert set(states[1:]) == {"firing"}


def test_cooldown_holds_back_a_new_alert() -> None:
    spike, low = window(10, 20), window(1, 20)
    rule = Rule(cooldown_minutes=10)
    seq = [spike, spike, low, low] + [spike] * 12
    states, transitions = run(rule, seq)
    # Resolved at minute 3; cannot fire before minute 13: pending at 13, firing at 14.
    assert transitions == [(1, "firing"), (3, "resolved"), (14, "firing")]
    assert states[4:13] == ["resolved"] * 9 and states[13] == "pending"


def test_disabled_rule_resolves_and_stays_quiet() -> None:
    spike = window(10, 20)
    state, _ = step(RULE, State("firing", 0, T, T), judge(RULE, spike, None), T)
    off = Rule(enabled=False)
    state, t1 = step(off, state, judge(off, spike, None), T + timedelta(minutes=1))
    state, t2 = step(off, state, judge(off, spike, None), T + timedelta(minutes=2))
    assert (t1, t2, state.state) == (None, "resolved", "resolved")
