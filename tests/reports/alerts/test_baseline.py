from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.alerts.baseline import baseline_spans, wilson_interval, z_for


def test_wilson_matches_published_values() -> None:
    # Wilson (1927) / Newcombe (1998) table: 0/10, 1/10 and 5/10 at 95 %.
    assert wilson_interval(0, 10, 0.95) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(1, 10, 0.95) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    assert wilson_interval(5, 10, 0.95) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_rate_and_narrows_with_more_calls(case: tuple[int, int]) -> None:
    k, n = case
    lo, hi = wilson_interval(k, n, 0.95)
    assert 0 <= lo <= k / n <= hi <= 1
    lo10, hi10 = wilson_interval(10 * k, 10 * n, 0.95)
    assert hi10 - lo10 < hi - lo


def test_small_counts_are_not_evidence() -> None:
    # 1 abandoned of 2 is a 50 % rate, but says little: the lower bound is under 10 %.
    assert wilson_interval(1, 2, 0.95)[0] < 0.10
    # 15 of 30 is far stronger evidence against a 5 % norm.
    assert wilson_interval(15, 30, 0.95)[0] > 0.3


def test_baseline_hours_keep_local_time_across_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    # Monday after the end of summer time: the previous weeks were UTC+2, this one UTC+1.
    at = datetime(2026, 11, 2, 10, 15, tzinfo=paris)
    spans = baseline_spans(at, 15, 2, paris)
    assert [(lo.astimezone(paris).replace(tzinfo=None), hi - lo) for lo, hi in spans] == [
        (datetime(2026, 10, 26, 9, 37, 30), timedelta(hours=1)),
        (datetime(2026, 10, 19, 9, 37, 30), timedelta(hours=1)),
    ]
    assert spans[1][0].utcoffset() == timedelta(0) and spans[1][0].tzinfo == timezone.utc
