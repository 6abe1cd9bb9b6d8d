"""Micro-batching writer: many concurrent requests, one transaction.

Each request hands its item to `submit()` and waits. One writer task takes
everything that queued up while the previous transaction ran (no timer: a
timer only adds latency), writes it in one transaction, commits, and only
then wakes the waiting requests. Under load batches grow by themselves;
at low load a lone event is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from store.dead_letters import DeadLetter, insert_dead_letters
from store.engine import is_unavailable, schema_missing
from store.errors import DatabaseUnavailable
from store.ingest import Delivery, IngestResult, ingest
from store.settings import TenantSettings

log = logging.getLogger("callstore.receiver.batcher")

Item = Delivery | DeadLetter
#: Called with a batch the database could not take; returns when the batch is
#: durable elsewhere (the spool), optionally with, per item, None or the
#: exception for the one item it could not keep; raises DatabaseUnavailable
#: (e.g. the spool is full) when it kept nothing.
Fallback = Callable[[Sequence[Item]], Awaitable[Sequence[BaseException | None] | None]]
#: After the database was found unreachable, batches go straight to the fallback
#: for this long: during an outage a connection attempt per batch would make
#: every request wait for it (a black-holed host costs the whole connect timeout).
OUTAGE_SECONDS = 1.0


class Unstorable(Exception):
    """The database rejected this one item (not the connection): it becomes a dead letter."""


@dataclass
class _Pending:
    item: Item
    future: asyncio.Future[None]


class BatchWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        tenants: Mapping[str, TenantSettings],
        *,
        batch_max: int = 500,
        writers: int = 2,
        fallback: Fallback | None = None,
        on_commit: Callable[[Sequence[Item], IngestResult, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._tenants = tenants
        self._batch_max = batch_max
        self._fallback = fallback
        self._on_commit = on_commit
        self._writers = writers
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._outage_until = 0.0

    def start(self) -> None:
        # Two writers by default: one prepares its batch while the other's
        # commit waits on the disk. Batches are written in key order, so
        # writers never deadlock on each other.
        self._tasks = [asyncio.create_task(self._run(), name=f"batch-writer-{i}") for i in range(self._writers)]

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if not self._tasks:
            return
        for _ in self._tasks:
            await self._queue.put(None)
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def submit(self, item: Item) -> None:
        """Return once `item` is durable; raise DatabaseUnavailable or Unstorable otherwise."""
        if not self._tasks or all(t.done() for t in self._tasks):
            raise DatabaseUnavailable("the writer is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, fut))
        await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._batch_max and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    await self._write(batch)
                    return
                batch.append(nxt)
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        items = [p.item for p in batch]
        started = time.perf_counter()
        if self._fallback is not None and time.monotonic() < self._outage_until:
            await self._unavailable(batch, None)
            return
        try:
            try:
                result = await self._transaction(items)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # A connection broken by a Postgres restart or failover: SQLAlchemy
                # has dropped it and every pooled one as old; a fresh one may work.
                result = await self._transaction(items)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the waiting requests
            if is_unavailable(exc) or schema_missing(exc):
                if self._fallback is not None:
                    log.warning("database %s, spooling locally: %s",
                                "unreachable" if is_unavailable(exc) else "without its schema yet", short_error(exc))
                self._outage_until = time.monotonic() + OUTAGE_SECONDS
                await self._unavailable(batch, exc)
            elif len(batch) > 1:
                # One bad item must not fail its neighbours: retry them one by one.
                for p in batch:
                    await self._write([p])
            else:
                log.error("could not store an event: %s", short_error(exc))
                _resolve(batch[0].future, Unstorable(short_error(exc)))
            return
        if self._on_commit is not None:
            self._on_commit(items, result, time.perf_counter() - started)
        for p in batch:
            _resolve(p.future, None)

    async def _transaction(self, items: Sequence[Item]) -> IngestResult:
        deliveries = [i for i in items if isinstance(i, Delivery)]
        letters = [i for i in items if isinstance(i, DeadLetter)]
        async with self._engine.begin() as conn:
            result = await ingest(conn, deliveries, self._tenants)
            await insert_dead_letters(conn, letters)
        return result

    async def _unavailable(self, batch: list[_Pending], exc: BaseException | None) -> None:
        if self._fallback is None:
            log.warning("database unavailable: %s", short_error(exc) if exc else "")
            for p in batch:
                _resolve(p.future, DatabaseUnavailable("the database is not reachable"))
            return
        try:
            outcomes = await self._fallback([p.item for p in batch])
        except Exception as spool_exc:  # noqa: BLE001
            if not isinstance(spool_exc, DatabaseUnavailable):
                log.error("the spool could not take a batch: %s", short_error(spool_exc))
                spool_exc = DatabaseUnavailable("the database is not reachable and the spool failed")
            for p in batch:
                _resolve(p.future, spool_exc)
            return
        for p, outcome in zip(batch, outcomes or [None] * len(batch)):
            _resolve(p.future, outcome)


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def short_error(exc: BaseException) -> str:
    """One line about an exception, never with statement parameters (they may hold secrets)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:300]
