"""The local spool: acknowledged events wait here while Postgres is unreachable.

Layout under `CALLSTORE_DATA_DIR/spool`, one directory per receiver process
(replicas on one machine never write to the same file):

    spool/
      <host>-<pid>-<random>/       owned by one live process
        lock                       flock()ed by its owner for as long as it lives
        00000001-<uuid>.seg        segments, oldest first
        00000002-<uuid>.seg

A segment is the 8-byte magic `CSSPOOL1` followed by records:

    u32 length, big-endian | u32 CRC-32 of the payload | payload (orjson)

A batch is written with one write() and made durable with one fdatasync()
before any of its requests is answered; a new segment's directory entry is
fsynced too. Only the owner appends, and only to its newest segment, so a
crash can leave nothing worse than a torn last record: readers stop at the
first record whose length runs past the end of the file or whose CRC does not
match (that record was never acknowledged). A failed write is truncated away
before anything else is appended.

The drainer (receiver/drain.py) seals the current segment, ingests sealed ones
and deletes a file only after its records are committed. A directory whose
lock nobody holds belongs to a dead process and is adopted by the drainer of
any live one.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import fcntl
import logging
import os
import secrets
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from receiver.batcher import Item, Unstorable
from store.dead_letters import DeadLetter
from store.errors import DatabaseUnavailable
from store.ingest import Delivery

log = logging.getLogger("callstore.receiver.spool")

MAGIC = b"CSSPOOL1"
_HEADER = struct.Struct(">II")
#: No record is larger (a body is at most 256 KiB); a larger length is garbage.
MAX_RECORD = 4 * 1024 * 1024
#: A segment is sealed once it is this large, so drained files can be deleted early.
SEGMENT_BYTES = 8 * 1024 * 1024
LOCK_NAME = "lock"


class SpoolFull(DatabaseUnavailable):
    """The database is unreachable and the spool has reached CALLSTORE_SPOOL_MAX_BYTES."""


# --- records -------------------------------------------------------------------


def encode(item: Item) -> bytes:
    """One record's payload. Raises TypeError for a payload orjson cannot write (too deep)."""
    if isinstance(item, Delivery):
        return orjson.dumps({
            "k": "d", "t": item.tenant_id, "c": item.call_id, "s": item.source,
            "r": item.received_at.isoformat(), "h": item.body_sha256.hex(), "p": item.payload,
        })
    return orjson.dumps({
        "k": "x", "t": item.tenant_id, "r": item.received_at.isoformat(), "reason": item.reason,
        "detail": item.detail, "b": base64.b64encode(item.body).decode(), "n": item.body_bytes,
        "ct": item.content_type, "ra": item.remote_addr,
    })


def decode(payload: bytes) -> Item:
    r: dict[str, Any] = orjson.loads(payload)
    received_at = datetime.fromisoformat(r["r"])
    if r["k"] == "d":
        return Delivery(r["t"], r["c"], r["s"], r["p"], received_at, bytes.fromhex(r["h"]))
    return DeadLetter(
        received_at=received_at, tenant_id=r["t"], reason=r["reason"], detail=r["detail"],
        body=base64.b64decode(r["b"]), body_bytes=r["n"], content_type=r["ct"], remote_addr=r["ra"],
    )


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class Contents:
    records: list[bytes]
    #: Bytes after the last good record (a torn write); 0 when the file is whole.
    torn_bytes: int


def read_segment(path: Path) -> Contents:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        # Torn while its header was being written: it never held a record.
        return Contents([], len(data))
    records: list[bytes] = []
    pos = len(MAGIC)
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if length > MAX_RECORD or start + length > len(data):
            break
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        pos = start + length
    return Contents(records, len(data) - pos)


# --- segments and directories -------------------------------------------------


@dataclass
class Segment:
    path: Path
    records: int = 0
    #: Records already committed to Postgres (known to this process).
    done: int = 0
    size: int = 0
    #: received_at (epoch seconds) of the oldest record not yet committed.
    oldest: float | None = None
    sealed: bool = False

    @property
    def id(self) -> str:
        """Globally unique: the key of its progress row in callstore.spool_progress."""
        return self.path.stem

    @property
    def pending(self) -> int:
        return self.records - self.done


@dataclass
class SpoolDir:
    """One process's directory with its lock held by us (our own, or adopted)."""

    path: Path
    lock_fd: int
    segments: list[Segment] = field(default_factory=list)

    def release(self, remove: bool) -> None:
        if remove:
            try:
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                self.path.rmdir()
                _fsync_dir(self.path.parent)
            except OSError as exc:  # a segment appeared or the directory is gone: keep it
                log.debug("spool directory %s kept: %s", self.path.name, exc)
        os.close(self.lock_fd)


def _lock(directory: Path) -> int | None:
    """Take `directory`'s lock without waiting; the fd holds it (released when closed or on death)."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(path: Path) -> list[Segment]:
    """The segments of a directory we hold, read to count what they carry."""
    out = []
    for p in sorted(path.glob("*.seg")):
        contents = read_segment(p)
        if contents.torn_bytes:
            log.warning("spool segment %s/%s ends with a torn record (%d bytes, never acknowledged): ignored",
                        path.name, p.name, contents.torn_bytes)
        oldest = decode(contents.records[0]).received_at.timestamp() if contents.records else None
        out.append(Segment(p, records=len(contents.records), size=p.stat().st_size, oldest=oldest, sealed=True))
    return out


# --- the spool of this process -----------------------------------------------


class Spool:
    """Appends batches durably to this process's directory; tracks depth for /readyz and /metrics."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.own: SpoolDir | None = None
        self.adopted: list[SpoolDir] = []
        self._current: Segment | None = None
        self._fd: int | None = None
        self._seq = 0
        self._lock = asyncio.Lock()

    # lifecycle

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        path = self.root / name
        path.mkdir(mode=0o700)
        _fsync_dir(self.root)
        fd = _lock(path)
        assert fd is not None, "a directory just created cannot be locked by anyone else"
        self.own = SpoolDir(path, fd)

    def close(self) -> None:
        """Release our directory; it stays (for adoption) if it still holds events."""
        self._close_current()
        for d in [*self.adopted, *([self.own] if self.own else [])]:
            d.release(remove=not any(s.pending for s in d.segments))
        self.adopted = []
        self.own = None

    # appending (the batch writer's fallback)

    async def append(self, items: Sequence[Item]) -> list[BaseException | None]:
        """Make `items` durable; per item, None or the reason it could not be spooled.

        Raises SpoolFull when the batch does not fit under the size cap.
        """
        if self.own is None:
            raise DatabaseUnavailable("the spool is not open")
        results: list[BaseException | None] = []
        frames: list[bytes] = []
        oldest: float | None = None
        for item in items:
            try:
                frames.append(frame(encode(item)))
            except (TypeError, ValueError) as exc:
                results.append(Unstorable(f"{type(exc).__name__}: {exc}"))
                continue
            results.append(None)
            t = item.received_at.timestamp()
            oldest = t if oldest is None else min(oldest, t)
        if not frames:
            return results
        data = b"".join(frames)
        async with self._lock:
            if self.size + len(data) > self.max_bytes:
                raise SpoolFull(f"the database is unreachable and the spool is full ({self.max_bytes} bytes)")
            await asyncio.to_thread(self._write, data, len(frames), oldest)
        return results

    def _write(self, data: bytes, count: int, oldest: float | None) -> None:
        assert self.own is not None
        if self._current is None:
            self._new_segment()
        seg, fd = self._current, self._fd
        assert seg is not None and fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except OSError:
            # Never leave a partial record in front of the next one.
            os.ftruncate(fd, seg.size)
            raise
        seg.size += len(data)
        seg.records += count
        if seg.oldest is None and oldest is not None:
            seg.oldest = oldest
        if seg.size >= SEGMENT_BYTES:
            self._close_current()

    def _new_segment(self) -> None:
        assert self.own is not None
        self._seq += 1
        path = self.own.path / f"{self._seq:08d}-{uuid.uuid4().hex}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            os.write(fd, MAGIC)
            os.fsync(fd)
            _fsync_dir(self.own.path)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._current = Segment(path, size=len(MAGIC))
        self._fd = fd
        self.own.segments.append(self._current)

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._current is not None:
            self._current.sealed = True
        self._current, self._fd = None, None

    # for the drainer

    async def seal(self) -> None:
        """Close the segment being appended to, so that it can be drained and deleted."""
        async with self._lock:
            if self._current is not None and self._current.records:
                self._close_current()

    def adopt_orphans(self) -> int:
        """Take over the directories of dead processes. Returns how many were adopted."""
        if not self.root.is_dir():
            return 0
        held = {d.path for d in self.adopted} | ({self.own.path} if self.own else set())
        count = 0
        for path in sorted(p for p in self.root.iterdir() if p.is_dir() and p not in held):
            try:
                fd = _lock(path)
            except FileNotFoundError:  # removed by another adopter meanwhile
                continue
            if fd is None:
                continue  # alive
            orphan = SpoolDir(path, fd, _scan(path))
            pending = sum(s.pending for s in orphan.segments)
            if pending:
                log.info("adopted the spool of a stopped process (%s): %d events to drain", path.name, pending)
            self.adopted.append(orphan)
            count += 1
        return count

    def sealed_segments(self) -> list[tuple[SpoolDir, Segment]]:
        dirs = [*self.adopted, *([self.own] if self.own else [])]
        return [(d, s) for d in dirs for s in d.segments if s.sealed]

    def forget(self, directory: SpoolDir, segment: Segment) -> None:
        """Delete a segment whose records are all committed."""
        segment.path.unlink(missing_ok=True)
        _fsync_dir(directory.path)
        directory.segments.remove(segment)

    def release_drained_adoptions(self) -> None:
        for d in [d for d in self.adopted if not d.segments]:
            d.release(remove=True)
            self.adopted.remove(d)

    # status

    def _segments(self) -> list[Segment]:
        dirs = [*self.adopted, *([self.own] if self.own else [])]
        return [s for d in dirs for s in d.segments]

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments())

    @property
    def depth(self) -> int:
        return sum(s.pending for s in self._segments())

    def oldest_age(self) -> float:
        times = [s.oldest for s in self._segments() if s.pending and s.oldest is not None]
        return max(0.0, time.time() - min(times)) if times else 0.0

    def status(self) -> dict[str, float]:
        return {
            "depth": self.depth,
            "oldest_age_seconds": round(self.oldest_age(), 3),
            "bytes": self.size,
            "max_bytes": self.max_bytes,
            "full": int(self.size >= self.max_bytes),
        }
