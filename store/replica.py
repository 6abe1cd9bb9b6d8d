"""Reads that may be a moment old go to a streaming replica (`DATABASE_READ_URL`).

A read goes to the replica only while the replica answers and is at most
`max_lag_s` seconds behind the primary; otherwise it goes to the primary.
Writes, jobs and reads that must see their own request's writes never come
here: they use the primary's engine directly.

How the replica's health is known:

- a probe every `every_s` seconds reads the primary's WAL position and the
  replica's replay position. The lag is the time since the primary was last
  at a position the replica has replayed: an upper bound on how old the
  replica's data is (to within one probe interval), right also when the
  primary is idle or the replica has lost its stream from the primary;
- a read that fails on the replica because the replica cannot be reached is
  run again on the primary (reads are idempotent: the caller sees no error),
  and the replica is set aside for `backoff_s` seconds before the probe tries
  it again. A read cancelled by the replica's recovery (a conflict with a
  change being replayed) is run again on the primary too;
- each switch is logged once: away from the replica (with the reason) and
  back to it; never a line per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.engine import _driver_error, is_unavailable

log = logging.getLogger("callstore.replica")
T = TypeVar("T")

#: Seconds a probe query may take before the replica counts as unreachable.
PROBE_TIMEOUT_S = 3.0
#: Primary positions kept while the replica has not replayed them (one per probe).
MAX_SAMPLES = 4096

_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
_REPLICA_POSITION = text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn")

# States (readyz `replica.state`); only the first is in use.
IN_USE = "in use"
STARTING = "starting"
CATCHING_UP = "catching up"
LAGGING = "lagging"
UNREACHABLE = "unreachable"
NOT_A_STANDBY = "not a standby"
#: States that are not worth a log line: they last one probe or two.
_QUIET = {STARTING, CATCHING_UP}


def masked_url(url: str) -> str:
    """`url` as log lines may show it: scheme, user, host, port and database, never the password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(the configured URL)"
    user = f"{parts.username}:***@" if parts.username else ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{user}{host}{f':{port}' if port else ''}{parts.path}"


def _recovery_conflict(exc: BaseException) -> bool:
    """The replica cancelled the statement to replay a change (SQLSTATE 40001 on a standby)."""
    import asyncpg

    return isinstance(_driver_error(exc), asyncpg.SerializationError)


class ReadRouting:
    """Where read-only queries go: the replica while it is healthy, else the primary.

    Without a replica every read goes to the primary, so callers use one code path.
    """

    def __init__(self, primary: AsyncEngine, replica: AsyncEngine | None = None, *,
                 probe: AsyncEngine | None = None, where: str = "", max_lag_s: float = 30.0,
                 every_s: float = 1.0, backoff_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary = primary
        self.replica = replica
        self._probe_engine = probe or replica
        self.where = where or "DATABASE_READ_URL"
        self.max_lag_s = max_lag_s
        self.every_s = every_s
        self.backoff_s = backoff_s
        self._clock = clock
        self.in_use = False
        self.state = STARTING if replica is not None else "not configured"
        self.detail: str | None = None
        self.lag_s: float | None = None
        self._down_until = 0.0
        self._logged_state: str | None = None
        self._stale_pool = False
        self._samples: deque[tuple[float, int]] = deque(maxlen=MAX_SAMPLES)

    @property
    def configured(self) -> bool:
        return self.replica is not None

    def reader(self) -> AsyncEngine:
        """The engine for a read that may be up to `max_lag_s` old."""
        if self.replica is not None and self.in_use:
            return self.replica
        return self.primary

    async def read(self, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """`fn(engine)` on the reader; run again on the primary when the replica fails under it."""
        engine = self.reader()
        if engine is self.primary:
            return await fn(engine)
        try:
            return await fn(engine)
        except Exception as exc:
            if is_unavailable(exc):
                self.set_aside(f"a read failed: {type(_driver_error(exc)).__name__}")
            elif not _recovery_conflict(exc):
                raise
        return await fn(self.primary)

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`fn(conn)` on a connection of the reader (see `read`)."""

        async def on(engine: AsyncEngine) -> T:
            async with engine.connect() as conn:
                return await fn(conn)

        return await self.read(on)

    def set_aside(self, detail: str) -> None:
        """The replica cannot be reached: reads go to the primary for at least `backoff_s`."""
        self._down_until = self._clock() + self.backoff_s
        self._stale_pool = True
        self.lag_s = None
        self._set(UNREACHABLE, detail)

    # -- the probe -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Probe the replica in the background while the context lasts (the app's lifespan)."""
        if self.replica is None:
            yield
            return
        task = asyncio.create_task(self._probe_forever(), name="replica-probe")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe_forever(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # noqa: BLE001 - the probe must go on; reads stay where they are
                log.exception("the read replica probe failed")
            await asyncio.sleep(self.every_s)

    async def probe(self) -> None:
        """One look at both servers: the primary's position, then the replica's."""
        assert self.replica is not None and self._probe_engine is not None
        taken = self._clock()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self.primary.connect() as conn:
                    position = int((await conn.execute(_PRIMARY_POSITION)).scalar_one())
            self._samples.append((taken, position))
        except Exception:  # noqa: BLE001 - the primary's own trouble is told by /readyz; the lag is judged from older samples
            pass
        if self._clock() < self._down_until:
            return
        if self._stale_pool:  # connections to a server that went away: none of them is reused
            self._stale_pool = False
            await self.replica.dispose()
            if self._probe_engine is not self.replica:
                await self._probe_engine.dispose()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self._probe_engine.connect() as conn:
                    in_recovery, replayed = (await conn.execute(_REPLICA_POSITION)).one()
        except Exception as exc:  # noqa: BLE001 - any failure: not usable now
            self.set_aside(type(_driver_error(exc)).__name__)
            return
        if not in_recovery:
            # A promoted standby no longer follows this primary: its data drifts away.
            self.lag_s = None
            self._set(NOT_A_STANDBY, "it is not in recovery (promoted?); point DATABASE_READ_URL at a standby")
            return
        self._judge(int(replayed) if replayed is not None else -1)

    def _judge(self, replayed: int) -> None:
        now = self._clock()
        match = None
        for i in range(len(self._samples) - 1, -1, -1):
            if self._samples[i][1] <= replayed:
                match = i
                break
        if match is not None:
            for _ in range(match):  # older positions are replayed too: no longer needed
                self._samples.popleft()
            self.lag_s = max(0.0, now - self._samples[0][0])
            if self.lag_s <= self.max_lag_s:
                self._set(IN_USE, None)
                return
        else:  # behind every position seen: at least as old as the oldest
            self.lag_s = now - self._samples[0][0] if self._samples else None
            if self.lag_s is None or self.lag_s <= self.max_lag_s:
                self._set(CATCHING_UP, None)
                return
        self._set(LAGGING, f"{self.lag_s:.0f} s behind the primary, more than CALLSTORE_READ_MAX_LAG "
                           f"({self.max_lag_s:.0f} s)")

    def _set(self, state: str, detail: str | None) -> None:
        was_in_use = self.in_use
        self.state, self.detail = state, detail
        self.in_use = state == IN_USE
        if self.in_use and not was_in_use:
            log.info("read replica %s in use%s (lag %.1f s): reads go to it", self.where,
                     " again" if self._logged_state is not None else "", self.lag_s or 0.0)
        elif was_in_use and not self.in_use:
            log.warning("read replica %s %s (%s): falling back to the primary for reads", self.where, state, detail)
        elif self.in_use or state in _QUIET or state == self._logged_state:
            return
        else:  # not in use before either: the reason is new (e.g. at start, or unreachable after lagging)
            log.warning("read replica %s %s (%s): reads stay on the primary", self.where, state, detail)
        self._logged_state = state

    # -- what /readyz and /metrics show ---------------------------------------

    def status(self) -> dict[str, object]:
        body: dict[str, object] = {"configured": self.configured, "in_use": self.in_use,
                                   "lag_seconds": None if self.lag_s is None else round(self.lag_s, 1)}
        if self.configured:
            body["state"] = self.state
            if self.detail:
                body["detail"] = self.detail
        return body

    def lag_metric(self) -> float:
        return math.nan if self.lag_s is None else self.lag_s
