"""Kong-style rate limiting: fixed 10-second windows, per tenant and per route."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sync.fake.stats import Stats

WINDOW_SECONDS = 10


@dataclass
class _Window:
    number: int = -1
    allowed: int = 0
    arrived: int = 0

    def roll(self, number: int) -> None:
        if number != self.number:
            self.number, self.allowed, self.arrived = number, 0, 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int


@dataclass
class RateLimiter:
    """Counts requests in windows aligned to multiples of 10 s of the clock.

    A limit of 0 means unlimited, and that bucket's headers are left out.
    Rejected requests do not use up the window (as in Kong), but they are
    counted as arrivals for `Stats`.
    """

    tenant: _Window = field(default_factory=_Window)
    routes: dict[str, _Window] = field(default_factory=dict)

    def forget_arrivals(self) -> None:
        """Start counting arrivals afresh (after ``/_fake/reset-stats``); limits are unaffected."""
        self.tenant.arrived = 0
        for window in self.routes.values():
            window.arrived = 0

    def check(self, route: str, now: float, tenant_limit: int, route_limit: int, stats: Stats) -> Decision:
        number = int(now // WINDOW_SECONDS)
        tenant = self.tenant
        per_route = self.routes.setdefault(route, _Window())
        tenant.roll(number)
        per_route.roll(number)
        tenant.arrived += 1
        per_route.arrived += 1
        stats.observe_window(route, per_route.arrived, tenant.arrived)
        over = (tenant_limit > 0 and tenant.allowed >= tenant_limit) or (
            route_limit > 0 and per_route.allowed >= route_limit
        )
        if not over:
            tenant.allowed += 1
            per_route.allowed += 1
        headers: dict[str, str] = {}
        if tenant_limit > 0:
            headers["X-RateLimit-Limit-Tenant"] = str(tenant_limit)
            headers["X-RateLimit-Remaining-Tenant"] = str(max(0, tenant_limit - tenant.allowed))
        if route_limit > 0:
            headers["X-RateLimit-Limit-Route"] = str(route_limit)
            headers["X-RateLimit-Remaining-Route"] = str(max(0, route_limit - per_route.allowed))
        retry_after = max(1, math.ceil((number + 1) * WINDOW_SECONDS - now))
        return Decision(allowed=not over, headers=headers, retry_after=retry_after)
