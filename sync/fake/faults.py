"""Runtime fault switches: random API errors, latency, and per-recording faults."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

MEDIA_FAULTS: tuple[str, ...] = (
    "html200",
    "json200",
    "truncated",
    "404",
    "500_then_ok",
    "redirect_foreign",
    "redirect_same",
    "slow",
)
DEFAULT_FAILURES = 2
DEFAULT_SLOW_MS = 2000


@dataclass
class MediaFault:
    """How one recording path misbehaves.

    `amount` is the number of 500s before success for ``500_then_ok`` and the
    total milliseconds the body is trickled over for ``slow``.
    """

    kind: str
    amount: int = 0
    served: int = 0

    @classmethod
    def parse(cls, spec: str) -> MediaFault:
        """Read ``kind`` or ``kind:amount`` (e.g. ``500_then_ok:3``, ``slow:500``)."""
        kind, _, amount = spec.partition(":")
        if kind not in MEDIA_FAULTS:
            raise ValueError(f"unknown media fault {spec!r}; expected one of {', '.join(MEDIA_FAULTS)}")
        default = {"500_then_ok": DEFAULT_FAILURES, "slow": DEFAULT_SLOW_MS}.get(kind, 0)
        if not amount:
            return cls(kind, default)
        if not amount.isdigit():
            raise ValueError(f"media fault {spec!r}: the part after ':' must be a whole number")
        return cls(kind, int(amount))

    def spec(self) -> str:
        return f"{self.kind}:{self.amount}" if self.kind in ("500_then_ok", "slow") else self.kind


def _rate(body: Mapping[str, object], name: str, current: float) -> float:
    value = body.get(name, current)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _whole(body: Mapping[str, object], name: str, current: int) -> int:
    value = body.get(name, current)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


@dataclass
class Faults:
    """Fault settings; `update` takes the body of ``POST /_fake/faults``."""

    error_rate: float = 0.0
    rate429: float = 0.0
    latency_ms: int = 0
    #: Every API answer waits while this is on (until switched off): a tenant
    #: that is slow for exactly as long as a test needs.
    hold: bool = False
    seed: int = 0
    media: dict[str, MediaFault] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def update(self, body: Mapping[str, object]) -> None:
        """Apply the keys present in `body`; validate everything before changing anything."""
        error_rate = _rate(body, "error_rate", self.error_rate)
        rate429 = _rate(body, "rate429", self.rate429)
        latency_ms = _whole(body, "latency_ms", self.latency_ms)
        seed = _whole(body, "seed", self.seed)
        hold = body.get("hold", self.hold)
        if not isinstance(hold, bool):
            raise ValueError(f"hold must be true or false, got {hold!r}")
        media = body.get("media", {})
        if not isinstance(media, dict):
            raise ValueError("media must be an object mapping a recording path to a fault (or null to clear)")
        parsed: dict[str, MediaFault | None] = {}
        for path, spec in media.items():
            if spec is not None and not isinstance(spec, str):
                raise ValueError(f"media fault for {path!r} must be a string or null, got {spec!r}")
            parsed[str(path)] = None if spec is None else MediaFault.parse(spec)
        if body.get("clear_media"):
            self.media.clear()
        self.error_rate, self.rate429, self.latency_ms, self.hold = error_rate, rate429, latency_ms, hold
        if "seed" in body:
            self.seed = seed
            self.rng.seed(seed)
        for path, fault in parsed.items():
            if fault is None:
                self.media.pop(path, None)
            else:
                self.media[path] = fault

    def roll(self) -> int | None:
        """The status of an injected failure for this API request (500 or 429), or None."""
        if self.error_rate and self.rng.random() < self.error_rate:
            return 500
        if self.rate429 and self.rng.random() < self.rate429:
            return 429
        return None

    def as_json(self) -> dict[str, object]:
        return {
            "error_rate": self.error_rate,
            "rate429": self.rate429,
            "latency_ms": self.latency_ms,
            "hold": self.hold,
            "seed": self.seed,
            "media": {path: fault.spec() for path, fault in self.media.items()},
        }
