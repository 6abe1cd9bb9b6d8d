"""The fake's call history, indexed by start time for windowed paging."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sync.fake.history import FakeCall

Record = dict[str, object]


def media_path(recording_url: str) -> str:
    """The file path a record's `recording_url` names (bare path or full MP3Export URL)."""
    if "MP3Export.do" in recording_url:
        values = parse_qs(urlsplit(recording_url).query).get("url", [""])
        return values[0]
    return recording_url


class CallIndex:
    """Records sorted by (start instant, starttime, call_id), searchable by window.

    Records are kept as given (any JSON object with a string `call_id` and a
    `starttime` in ``YYYY-MM-DD HH:mm:ss``), so tests can load odd values.
    """

    def __init__(self, records: Iterable[Mapping[str, object]], tz: str) -> None:
        self.tz = tz
        self._zone = ZoneInfo(tz)
        by_id: dict[str, Record] = {}
        for record in records:
            call_id = record.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ValueError(f"every record needs a non-empty string call_id, got {call_id!r}")
            by_id[call_id] = dict(record)
        keyed = sorted((self._start_of(r), str(r["starttime"]), cid, r) for cid, r in by_id.items())
        self._starts = [k[0] for k in keyed]
        self.records: list[Record] = [k[3] for k in keyed]
        self._by_id = by_id
        self.media_paths: set[str] = set()
        for record in self.records:
            url = record.get("recording_url")
            if isinstance(url, str) and url:
                self.media_paths.add(media_path(url))

    @classmethod
    def from_calls(cls, calls: Iterable[FakeCall], tz: str) -> CallIndex:
        return cls((c.as_record() for c in calls), tz)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, call_id: str) -> Record | None:
        return self._by_id.get(call_id)

    def extended(self, records: Iterable[Mapping[str, object]]) -> CallIndex:
        """A new index with `records` added; a record replaces one with the same call_id."""
        merged: dict[str, Mapping[str, object]] = dict(self._by_id)
        for record in records:
            merged[str(record.get("call_id", ""))] = record
        return CallIndex(merged.values(), self.tz)

    def window(self, start: datetime | None, end: datetime | None) -> list[Record]:
        """Records whose start lies in [start, end], both ends inclusive; None is open."""
        lo = 0 if start is None else bisect_left(self._starts, start.timestamp())
        hi = len(self._starts) if end is None else bisect_right(self._starts, end.timestamp())
        return self.records[lo:hi]

    def _start_of(self, record: Mapping[str, object]) -> float:
        value = record.get("starttime")
        try:
            # fromisoformat is far faster than strptime; the checks keep the format strict.
            if not isinstance(value, str) or len(value) != 19 or value[10] != " ":
                raise ValueError(value)
            local = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"call {record.get('call_id')!r}: starttime must be 'YYYY-MM-DD HH:mm:ss', got {value!r}"
            ) from None
        return local.replace(tzinfo=self._zone).timestamp()
