"""Refused requests (401) in the log: at most one line a minute per remote
address, saying how many there were, so that a client retrying with a wrong
key or token cannot flood the log (nor hide other lines in it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("callstore.receiver.refused")

#: Addresses remembered at most; past that, those quiet for a window are forgotten.
MAX_ADDRESSES = 10_000


class RefusalLog:
    def __init__(self, what: str, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.every = every
        self.clock = clock
        #: remote address -> (when it was last logged, refusals since, not logged yet)
        self._seen: dict[str, tuple[float, int]] = {}

    def refused(self, addr: str | None, reason: str) -> None:
        key = addr or "unknown"
        now = self.clock()
        logged_at, pending = self._seen.get(key, (None, 0))
        pending += 1
        if logged_at is not None and now - logged_at < self.every:
            self._seen[key] = (logged_at, pending)
            return
        if len(self._seen) >= MAX_ADDRESSES:
            self._forget(now)
        self._seen[key] = (now, 0)
        log.warning("%s refused (%s): %d from %s in the last %d s", self.what, reason, pending, key,
                    int(self.every))

    def _forget(self, now: float) -> None:
        for key, (logged_at, _) in list(self._seen.items()):
            if now - logged_at >= self.every:
                del self._seen[key]
        if len(self._seen) >= MAX_ADDRESSES:  # all of them busy: start again rather than grow
            self._seen.clear()
