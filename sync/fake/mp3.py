"""Deterministic stand-in recordings: bytes that look like an MP3 file.

The content is seeded by the recording path, so a test can recompute what the
server sent and compare hashes. About three files in four open with an ID3v2
tag, the rest directly with an MPEG-1 Layer III frame sync, since both occur
in real exports and a content check must accept both.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import lru_cache

DEFAULT_MEDIA_SIZE = 64 * 1024

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding, joint stereo: 417-byte frames.
FRAME_HEADER = b"\xff\xfb\x90\x64"
FRAME_SIZE = 417


def _id3_tag() -> bytes:
    text = b"\x00callstore fake recording"
    frame = b"TIT2" + len(text).to_bytes(4, "big") + b"\x00\x00" + text
    size = len(frame)
    # ID3v2 sizes are "syncsafe": 7 bits per byte.
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + frame


@lru_cache(maxsize=32)
def recording_bytes(path: str, size: int = DEFAULT_MEDIA_SIZE) -> bytes:
    """The `size` bytes the fake serves for recording `path`."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    seed = hashlib.sha256(path.encode("utf-8")).digest()
    rng = random.Random(seed)
    head = _id3_tag() if seed[0] % 4 else b""
    frames = -(-max(0, size - len(head)) // FRAME_SIZE)
    body = b"".join(FRAME_HEADER + rng.randbytes(FRAME_SIZE - len(FRAME_HEADER)) for _ in range(frames))
    return (head + body)[:size]


def recording_digest(path: str, size: int = DEFAULT_MEDIA_SIZE) -> tuple[str, int]:
    """Lower-case hex SHA-256 and length of `recording_bytes(path, size)`."""
    data = recording_bytes(path, size)
    return hashlib.sha256(data).hexdigest(), len(data)


def chunked(data: bytes, chunk_size: int = 16 * 1024) -> Iterator[bytes]:
    for offset in range(0, len(data), chunk_size):
        yield data[offset : offset + chunk_size]
