"""What the fake saw, so tests can check a client's manners."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Request counters; reset with ``POST /_fake/reset-stats``."""

    requests: Counter[str] = field(default_factory=Counter)
    media_by_path: Counter[str] = field(default_factory=Counter)
    responses_429: int = 0
    responses_500: int = 0
    exceeded: int = 0
    max_window_route: dict[str, int] = field(default_factory=dict)
    max_window_tenant: int = 0

    def observe_window(self, route: str, route_count: int, tenant_count: int) -> None:
        """Record the arrivals so far in the current 10 s window."""
        if route_count > self.max_window_route.get(route, 0):
            self.max_window_route[route] = route_count
        self.max_window_tenant = max(self.max_window_tenant, tenant_count)

    def observe_status(self, status: int) -> None:
        if status == 429:
            self.responses_429 += 1
        elif status == 500:
            self.responses_500 += 1

    def as_json(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "media_by_path": dict(self.media_by_path),
            "responses_429": self.responses_429,
            "responses_500": self.responses_500,
            "exceeded": self.exceeded,
            "max_window_route": dict(self.max_window_route),
            "max_window_tenant": self.max_window_tenant,
        }
