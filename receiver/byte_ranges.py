"""HTTP `Range: bytes=...` for one representation (RFC 9110 section 14).

Only single ranges are served. A header that is not a byte range, or asks
for several ranges, is ignored (the whole file, 200), as the RFC allows; a
well-formed range that starts past the end is unsatisfiable (416).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range asked for, None for the whole file; raises Unsatisfiable."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if not first.isascii() or not last.isascii() or len(first) > 18 or len(last) > 18:
        return None
    if first == "":  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)
