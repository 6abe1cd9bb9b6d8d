"""Client-side pacing for Alohub's gateway limits (Kong: fixed 10-second windows,
one bucket per tenant and one per route).

Each response that passed authentication carries `X-RateLimit-Limit-{Tenant,Route}`
and `X-RateLimit-Remaining-{Tenant,Route}` (names from the vendor's seed page;
docs/alohub-assumptions.md). The limiter learns each bucket's limit from them and
keeps, per bucket and current window, an estimate of the requests still allowed:

- it starts a window at `limit` minus the requests still in flight (one sent at
  the very end of the previous window may be counted in this one);
- every request sent takes one; a response of this window can only lower the
  estimate (another process may share the tenant's quota);
- at zero, callers wait for the next window, so no request is ever refused for
  lack of quota when callstore is the only client;
- until a bucket's limit is known, one request at a time probes it;
- a 429 blocks the exhausted bucket (or the route, if the answer does not say
  which) for `Retry-After` seconds.

Windows are aligned to multiples of `window_s` of the wall clock, as Kong's
fixed windows are. State lives in memory and is shared by every client of the
process (one object, created by the caller).

Everything is kept per tenant: a tenant whose quota is spent, or that is
answered 429, waits alone; other tenants' requests go on. On top of the
gateway's limits, a tenant may have callstore's own (`configure`): at most
`per_second` requests started per second and `concurrent` in flight at once
(ALOHUB_MAX_REQUESTS_PER_SECOND, ALOHUB_MAX_CONCURRENT_REQUESTS).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

WINDOW_S = 10.0
#: How often a caller waiting for a probe answer looks again.
_PROBE_POLL_S = 0.01
#: Margin after a window boundary before sending again (clock granularity).
_BOUNDARY_MARGIN_S = 0.005


@dataclass
class Bucket:
    name: str
    #: None while unknown; 0 when the server sends no headers (unlimited).
    limit: int | None = None
    window: int = -1
    estimate: int = 0
    blocked_until: float = 0.0
    #: ticket id -> window it was sent in
    in_flight: dict[int, int] = field(default_factory=dict)

    @property
    def limited(self) -> bool:
        return bool(self.limit)

    def roll(self, window: int) -> None:
        if window != self.window:
            self.window = window
            if self.limit:
                self.estimate = self.limit - len(self.in_flight)


@dataclass(frozen=True)
class Ticket:
    id: int
    window: int
    buckets: tuple[Bucket, ...]
    #: The tenant's concurrency slot held by this request (given back on release).
    slot: asyncio.Semaphore | None = None


class _OwnLimits:
    """A tenant's own limits: starts spaced by 1/per_second, `concurrent` in flight."""

    def __init__(self, per_second: float | None, concurrent: int | None) -> None:
        self.per_second = per_second
        self.concurrent = concurrent
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next = 0.0
        self.slots = asyncio.Semaphore(concurrent) if concurrent else None

    async def pace(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        delay = self.next - now
        self.next = max(now, self.next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class RateLimits:
    """Buckets by (tenant key, route); one instance per process."""

    def __init__(self, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time,
                 observe: Callable[[str, str], None] | None = None) -> None:
        self.window_s = window_s
        self.clock = clock
        #: Told (tenant id, outcome) for every answer or network error (the per-tenant request metrics).
        self.observe = observe
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._own: dict[str, _OwnLimits] = {}
        self._ids = itertools.count(1)

    def configure(self, tenant: str, *, per_second: float | None = None, concurrent: int | None = None) -> None:
        """Set a tenant's own limits (kept while they do not change)."""
        own = self._own.get(tenant)
        if own is not None and (own.per_second, own.concurrent) == (per_second, concurrent):
            return
        if per_second or concurrent:
            self._own[tenant] = _OwnLimits(per_second, concurrent)
        else:
            self._own.pop(tenant, None)

    def bucket(self, tenant: str, route: str | None) -> Bucket:
        key = (tenant, route or "")
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(name=f"{tenant}:{route}" if route else tenant)
        return b

    def remaining(self, tenant: str, route: str) -> dict[str, int | None]:
        """The current estimates (for logs and tests)."""
        return {b.name: (b.estimate if b.limited else None) for b in (self.bucket(tenant, None), self.bucket(tenant, route))}

    async def acquire(self, tenant: str, route: str) -> Ticket:
        own = self._own.get(tenant)
        slot = own.slots if own is not None else None
        if own is not None:
            await own.pace()
        if slot is not None:
            await slot.acquire()
        try:
            return await self._acquire(tenant, route, slot)
        except BaseException:
            if slot is not None:
                slot.release()
            raise

    async def _acquire(self, tenant: str, route: str, slot: asyncio.Semaphore | None) -> Ticket:
        buckets = (self.bucket(tenant, None), self.bucket(tenant, route))
        while True:
            now = self.clock()
            window = int(now // self.window_s)
            wait = 0.0
            for b in buckets:
                b.roll(window)
                if now < b.blocked_until:
                    wait = max(wait, b.blocked_until - now)
                elif b.limit is None and b.in_flight:
                    wait = max(wait, _PROBE_POLL_S)
                elif b.limited and b.estimate <= 0:
                    wait = max(wait, (window + 1) * self.window_s - now + _BOUNDARY_MARGIN_S)
            if wait <= 0:
                ticket = Ticket(next(self._ids), window, buckets, slot)
                for b in buckets:
                    if b.limited:
                        b.estimate -= 1
                    b.in_flight[ticket.id] = window
                return ticket
            await asyncio.sleep(wait)

    def release(self, ticket: Ticket, headers: Mapping[str, str] | None, *, status: int | None = None,
                retry_after: float | None = None) -> None:
        """Account for the answer to `ticket` (`headers` None: no answer, or one before authentication)."""
        tenant_bucket, route_bucket = ticket.buckets
        if ticket.slot is not None:
            ticket.slot.release()
        for b in ticket.buckets:
            b.in_flight.pop(ticket.id, None)
        if headers is None:
            return
        exhausted = []
        for b, kind in ((tenant_bucket, "Tenant"), (route_bucket, "Route")):
            limit = _int(headers.get(f"x-ratelimit-limit-{kind.lower()}"))
            remaining = _int(headers.get(f"x-ratelimit-remaining-{kind.lower()}"))
            if limit is None:
                if b.limit is None:
                    b.limit = 0  # the gateway sends no headers for an unlimited bucket
                continue
            if b.limit != limit:
                b.limit = limit
                b.window = -1  # re-derive the estimate from the new limit
                b.roll(int(self.clock() // self.window_s))
            if remaining is not None:
                if ticket.window == b.window:
                    later = sum(1 for tid, w in b.in_flight.items() if w == b.window and tid > ticket.id)
                    b.estimate = min(b.estimate, remaining - later)
                if remaining <= 0:
                    exhausted.append(b)
        if status == 429:
            until = self.clock() + (retry_after if retry_after is not None else self.window_s)
            for b in exhausted or [route_bucket]:
                b.blocked_until = max(b.blocked_until, until)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
