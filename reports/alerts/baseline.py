"""What "above normal" means for small counts: Wilson score intervals, and
the spans of history the same hour of the week covered.

A z-score on 3 abandons out of 12 calls is meaningless (the normal
approximation fails for small n and rates near 0 or 1). The Wilson interval
stays inside [0, 1] and is honest for small n: the window fires only when
even its *lower* bound is above the baseline's *upper* bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from statistics import NormalDist
from zoneinfo import ZoneInfo

#: The baseline looks at one hour around the same local time of the week.
SPAN = timedelta(hours=1)


@lru_cache(maxsize=32)
def z_for(confidence: float) -> float:
    """z of a two-sided interval at `confidence` (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    # Exact at the ends (0 or all), where rounding would leave a hair of error.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == trials else min(1.0, centre + half)
    return lower, upper


@dataclass(frozen=True)
class Baseline:
    """Abandoned (short excluded) out of handled calls in the same hour of previous weeks."""

    abandoned: int
    handled: int
    upper_bound: float

    @property
    def rate(self) -> float | None:
        return self.abandoned / self.handled if self.handled else None


def baseline_spans(at: datetime, window_minutes: int, weeks: int, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """For each of the previous `weeks`: the hour centred on the window's centre,
    at the same local wall-clock time (so a DST change does not shift it)."""
    centre = (at - timedelta(minutes=window_minutes) / 2).astimezone(zone).replace(tzinfo=None)
    spans = []
    for k in range(1, weeks + 1):
        then = (centre - timedelta(weeks=k)).replace(tzinfo=zone).astimezone(timezone.utc)
        spans.append((then - SPAN / 2, then + SPAN / 2))
    return spans
