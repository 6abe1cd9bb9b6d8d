"""Everything one fake Alohub serves and remembers."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sync.fake.campaigns import Campaigns, dial, generate_campaigns
from sync.fake.faults import Faults
from sync.fake.history import DEFAULT_QUEUES, DEFAULT_TZ, FakeCall, FakeQueue, generate_calls
from sync.fake.index import CallIndex
from sync.fake.limits import RateLimiter
from sync.fake.mp3 import DEFAULT_MEDIA_SIZE
from sync.fake.stats import Stats

DEFAULT_MAX_LIMIT = 100


def _default_queues() -> list[FakeQueue]:
    return list(DEFAULT_QUEUES)


@dataclass
class FakeState:
    """The calls, queues, credentials, limits and fault switches of one fake.

    It is mutated only by the server's event loop (admin routes), so tests
    change it over HTTP once the server runs. `clock` is the wall clock the
    rate-limit windows are aligned to; tests may swap it for a fixed one.
    """

    api_key: str
    calls: CallIndex
    queues: list[FakeQueue] = field(default_factory=_default_queues)
    tenant_id: str | None = None
    media_size: int = DEFAULT_MEDIA_SIZE
    media_auth: bool = True
    max_limit: int = DEFAULT_MAX_LIMIT
    tenant_limit: int = 0
    route_limit: int = 0
    campaigns: Campaigns = field(default_factory=Campaigns)
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    clock: Callable[[], float] = time.time

    @property
    def tz(self) -> str:
        return self.calls.tz


def make_state(
    calls: Sequence[FakeCall],
    *,
    api_key: str,
    tz: str = DEFAULT_TZ,
    queues: Sequence[FakeQueue] | None = None,
    tenant_id: str | None = None,
) -> FakeState:
    """A state serving `calls` with default limits and no faults."""
    return FakeState(
        api_key=api_key,
        calls=CallIndex.from_calls(calls, tz),
        queues=list(DEFAULT_QUEUES if queues is None else queues),
        tenant_id=tenant_id,
    )


def build_state(
    *,
    calls: int,
    seed: int,
    since: datetime,
    until: datetime,
    api_key: str,
    tenant_id: str | None = None,
    media_size: int = DEFAULT_MEDIA_SIZE,
    max_limit: int = DEFAULT_MAX_LIMIT,
    tenant_limit: int = 0,
    route_limit: int = 0,
    error_rate: float = 0.0,
    rate429: float = 0.0,
    latency_ms: int = 0,
    tz: str = DEFAULT_TZ,
    media_auth: bool = True,
    curve: str = "diurnal",
    now: datetime | None = None,
    live: int = 0,
    campaigns: int = 0,
    contacts_per_campaign: int = 40,
) -> FakeState:
    """A state with `calls` generated calls between `since` and `until` (what the CLI serves).

    `curve`, `now` and `live` are `generate_calls`'s: how starts spread over
    the day, and which calls are still running at `now`. With `campaigns`,
    that many outbound campaigns (ids from 1042) whose contacts the fake's
    extra outbound calls dial, moving their `processStatus`.
    """
    history = generate_calls(calls, seed=seed, start=since, end=until, tz=tz, curve=curve, now=now, live=live)
    campaign_data = None
    if campaigns:
        rng = random.Random(seed + 1)
        phones = [f"09{n:08d}" for n in rng.sample(range(10**8), campaigns * contacts_per_campaign)]
        campaign_data = generate_campaigns(rng, phones, campaigns=campaigns)
        history = sorted(history + dial(campaign_data, rng, since, until, tz), key=lambda c: (c.starttime, c.call_id))
    state = make_state(history, api_key=api_key, tz=tz, tenant_id=tenant_id)
    if campaign_data is not None:
        state.campaigns = campaign_data
    state.media_size = media_size
    state.media_auth = media_auth
    state.max_limit = max_limit
    state.tenant_limit = tenant_limit
    state.route_limit = route_limit
    state.faults.update({"error_rate": error_rate, "rate429": rate429, "latency_ms": latency_ms, "seed": seed})
    return state
