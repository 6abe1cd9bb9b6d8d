"""The spool drainer: moves spooled events into Postgres as soon as it answers.

Every second, if anything is spooled, it checks that the database answers,
seals the segment being appended to and ingests sealed segments oldest first
through `store.ingest.ingest` (the one idempotent write path), in chunks. Each
chunk's transaction also moves the segment's row in callstore.spool_progress
forward, so after a crash between a commit and the file's deletion the records
already committed are skipped, not ingested again. A file is deleted only
once all its records are committed; its progress row goes after it.

Every few seconds it also adopts the spool directories of dead processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.batcher import Item, short_error
from receiver.spool import Segment, Spool, SpoolDir, decode, read_segment
from store.dead_letters import DeadLetter, insert_dead_letters
from store.engine import is_unavailable
from store.ingest import Delivery, ingest
from store.settings import TenantSettings

log = logging.getLogger("callstore.receiver.drain")

CHUNK = 500
POLL_SECONDS = 1.0
ADOPT_EVERY_SECONDS = 5.0

_PROGRESS = text("SELECT records_done FROM callstore.spool_progress WHERE segment = :s")
_ADVANCE = text(
    """
    INSERT INTO callstore.spool_progress (segment, records_done) VALUES (:s, :n)
    ON CONFLICT (segment) DO UPDATE SET records_done = excluded.records_done, updated_at = now()
    """
)
_FORGET = text("DELETE FROM callstore.spool_progress WHERE segment = :s")


class Drainer:
    def __init__(self, spool: Spool, engine: AsyncEngine, tenants: Mapping[str, TenantSettings],
                 *, poll_seconds: float = POLL_SECONDS, adopt_every: float = ADOPT_EVERY_SECONDS) -> None:
        self.spool = spool
        self.engine = engine
        self.tenants = tenants
        self.poll_seconds = poll_seconds
        self.adopt_every = adopt_every
        self.drained = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_adopt = 0.0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the spool and drain it for the lifetime of the app."""
        self.spool.open()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="spool-drainer")
        try:
            yield
        finally:
            self._stopping.set()
            try:
                # A chunk being committed is allowed to finish; what is left stays on disk.
                await asyncio.wait_for(self._task, timeout=10)
            except asyncio.TimeoutError:
                log.warning("the spool drainer did not stop in time; its files are kept for the next start")
            self.spool.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            delay = self.poll_seconds
            try:
                await self.drain_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything; the files stay
                if is_unavailable(exc):
                    log.debug("spool not drained, the database is unreachable: %s", short_error(exc))
                else:
                    log.error("spool not drained: %s", short_error(exc))
                    delay = 5 * self.poll_seconds
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def drain_once(self) -> int:
        """Adopt orphans when due, then drain what is spooled. Returns the events committed."""
        now = time.monotonic()
        if now - self._last_adopt >= self.adopt_every:
            self._last_adopt = now
            await asyncio.to_thread(self.spool.adopt_orphans)
        if not self.spool.depth and not self.spool.sealed_segments():
            self.spool.release_drained_adoptions()
            return 0
        async with self.engine.connect() as conn:  # is it back? (cheap, and before sealing)
            await conn.execute(text("SELECT 1"))
        await self.spool.seal()
        moved = 0
        for directory, segment in self.spool.sealed_segments():
            if self._stopping.is_set():
                break
            moved += await self._drain_segment(directory, segment)
        self.spool.release_drained_adoptions()
        if moved:
            log.info("drained %d spooled events into the database; %d left", moved, self.spool.depth)
        return moved

    async def _drain_segment(self, directory: SpoolDir, segment: Segment) -> int:
        records = (await asyncio.to_thread(read_segment, segment.path)).records
        segment.records = len(records)
        async with self.engine.connect() as conn:
            done = await conn.scalar(_PROGRESS, {"s": segment.id}) or 0
        segment.done = min(done, len(records))
        moved = 0
        while segment.done < len(records):
            if self._stopping.is_set():
                return moved
            end = min(segment.done + CHUNK, len(records))
            items = [decode(r) for r in records[segment.done:end]]
            await self._commit(items, segment, end)
            moved += end - segment.done
            segment.done = end
            segment.oldest = decode(records[end]).received_at.timestamp() if end < len(records) else None
        self.drained += moved
        await asyncio.to_thread(self.spool.forget, directory, segment)
        async with self.engine.begin() as conn:
            await conn.execute(_FORGET, {"s": segment.id})
        return moved

    async def _commit(self, items: Sequence[Item], segment: Segment, end: int) -> None:
        try:
            async with self.engine.begin() as conn:
                await _store(conn, items, self.tenants)
                await conn.execute(_ADVANCE, {"s": segment.id, "n": end})
            return
        except Exception as exc:
            if is_unavailable(exc):
                raise
            if len(items) == 1:
                return await self._commit_unstorable(items[0], segment, end, exc)
        # One bad record must not hold back the others: one transaction each.
        start = end - len(items)
        for i, item in enumerate(items):
            await self._commit([item], segment, start + i + 1)

    async def _commit_unstorable(self, item: Item, segment: Segment, end: int, exc: Exception) -> None:
        """The database takes the connection but not this record: keep it as a dead letter."""
        log.error("a spooled event could not be stored, kept as a dead letter: %s", short_error(exc))
        letters: list[DeadLetter] = []
        if isinstance(item, Delivery):
            
            body = orjson.dumps(item.payload)
            letters.append(DeadLetter(received_at=item.received_at, tenant_id=item.tenant_id, reason="unstorable",
                                      detail=short_error(exc), body=body, body_bytes=len(body)))
        async with self.engine.begin() as conn:
            await insert_dead_letters(conn, letters)
            await conn.execute(_ADVANCE, {"s": segment.id, "n": end})


async def _store(conn: AsyncConnection, items: Sequence[Item], tenants: Mapping[str, TenantSettings]) -> None:
    deliveries = [i for i in items if isinstance(i, Delivery) and i.tenant_id in tenants]
    unknown = [i for i in items if isinstance(i, Delivery) and i.tenant_id not in tenants]
    letters = [i for i in items if isinstance(i, DeadLetter)]
    # A tenant removed from the configuration since the event was spooled: keep the event, as a dead letter.
    for d in unknown:
        
        body = orjson.dumps(d.payload)
        letters.append(DeadLetter(received_at=d.received_at, tenant_id=d.tenant_id, reason="unknown_tenant",
                                  detail=f"tenant {d.tenant_id!r} is no longer configured", body=body,
                                  body_bytes=len(body)))
    await ingest(conn, deliveries, tenants)
    await insert_dead_letters(conn, letters)
