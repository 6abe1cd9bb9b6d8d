"""Where recordings live: storage keys and the storage backends.

A storage key is built only from the tenant, the call's local date and the
call id, each escaped so that it can never name a parent directory, an
absolute path or a hidden file: `<tenant>/<YYYY>/<MM>/<DD>/<call>.mp3`. The
URL Alohub serves and the file name it suggests are never used.

`RecordingStore` is the small interface the downloader (sync/) and playback
(receiver/) share; `LocalRecordingStore` keeps files under one root
directory. An S3-compatible backend implements the same five methods.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import string
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

#: Characters kept as they are in a key segment; everything else (".", "/",
#: "\\", "%", NUL, non-ASCII...) is percent-encoded, so the encoding is
#: one-to-one and a segment never contains "..", a separator or a leading dot.
_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
#: Longer encoded segments are cut and completed with a hash of the original
#: ("~" never occurs in an encoded segment, so a cut one cannot collide with
#: a short one).
MAX_SEGMENT = 120
_CUT = 80
READ_CHUNK = 256 * 1024


class UnsafeKey(ValueError):
    """A storage key that would leave the storage root."""


def encode_segment(value: str) -> str:
    """`value` as one safe path segment (percent-encoded, bounded length)."""
    out = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")) for c in value)
    if not out:
        out = "%"  # an empty id still gets a name, distinct from every encoded one
    if len(out) > MAX_SEGMENT:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        out = f"{out[:_CUT]}~{digest}"
    return out


def storage_key(tenant_id: str, call_id: str, started_at: datetime | None, zone: ZoneInfo) -> str:
    """The key of a call's recording: tenant, local call date, call id."""
    day = started_at.astimezone(zone).strftime("%Y/%m/%d") if started_at is not None else "undated"
    return f"{encode_segment(tenant_id)}/{day}/{encode_segment(call_id)}.mp3"


class RecordingStore(Protocol):
    """What the archive needs from a storage backend."""

    #: A local directory for partial downloads, on the same file system as
    #: the files when the backend is local (so that `put_from_file` renames).
    staging_dir: Path

    def ensure_staging(self) -> Path:
        """Create the staging directory (blocking; call it in a thread)."""

    async def put_from_file(self, key: str, source: Path) -> None:
        """Store the file `source` under `key`, atomically and durably; consumes `source`."""

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start`..`end` (inclusive) of the object, in chunks."""

    async def delete(self, key: str) -> bool:
        """Remove the object; False when it was not there."""

    async def exists(self, key: str) -> bool: ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""


class LocalRecordingStore:
    """Recordings as files under `root`; writes are atomic and durable."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging_dir = self.root / ".partial"

    def path(self, key: str) -> Path:
        """The file of `key`, refusing any key whose path would leave the root."""
        if not key or "\x00" in key or "\\" in key or key.startswith("/"):
            raise UnsafeKey("storage key is empty, absolute or contains NUL or a backslash")
        parts = key.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise UnsafeKey("storage key has an empty, dot or hidden segment")
        target = (self.root / key).resolve()
        # resolve() follows symbolic links: a link pointing elsewhere fails here too.
        if not target.is_relative_to(self.root) or target == self.root:
            raise UnsafeKey("storage key resolves outside the storage root")
        return target

    def ensure_staging(self) -> Path:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return self.staging_dir

    async def put_from_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        await asyncio.to_thread(self._rename_durably, source, target)

    def _rename_durably(self, source: Path, target: Path) -> None:
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes first, then the name that points at them
        finally:
            os.close(fd)
        created = _mkdirs(target.parent, self.root)
        os.replace(source, target)
        # The rename is durable once the directory entry is on disk; new
        # parent directories need their own entries synced too.
        for directory in [target.parent, *created]:
            _fsync_dir(directory)

    async def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.path(key)
        f = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def delete(self, key: str) -> bool:
        path = self.path(key)

        def go() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            return True

        return await asyncio.to_thread(go)

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def size(self, key: str) -> int | None:
        path = self.path(key)

        def go() -> int | None:
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
            return st.st_size if path.is_file() else None

        return await asyncio.to_thread(go)


def _mkdirs(directory: Path, root: Path) -> list[Path]:
    """Create `directory` and missing parents; returns the parents of created ones."""
    missing: list[Path] = []
    d = directory
    while not d.exists() and d != root:
        missing.append(d)
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    return [m.parent for m in missing]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
