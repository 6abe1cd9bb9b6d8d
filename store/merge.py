"""The call merge: many raw events of one call, one row.

Every delivery (a webhook event or a call-history record) is normalised into
an `Event`: canonical field names, typed values, absent values left out. The
row of a call is `fold(events)`: for every field, the value of the event with
the highest rank wins, where

    rank = (lifecycle, source, value)

- lifecycle: 2 when the event carries an end time, 1 an answer time, else 0
  (a later lifecycle state wins);
- source: history (1) over webhook (0) within the same lifecycle state (the
  call-history API is the source of truth for the fields it carries);
- value: a last, arbitrary but fixed tie-break, so two events of equal rank
  that disagree still give one answer.

An absent value never takes part, so it never overwrites a present one. The
rank is a total order and the fold takes a maximum per field, so the row does
not depend on the order or the number of deliveries (a property test checks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

from store.phone import canonical_phone

Source = Literal["webhook", "history"]
SOURCE_RANK: dict[str, int] = {"webhook": 0, "history": 1}

#: Columns of `callstore.calls` that the merge fills, in table order.
FIELDS: tuple[str, ...] = (
    "direction",
    "call_status",
    "hotline",
    "caller_number",
    "destination_number",
    "agent",
    "transaction_id",
    "started_at",
    "answered_at",
    "ended_at",
    "hangup_by",
    "total_seconds",
    "hold_seconds",
    "recording_url",
    "history_source",
    "object_id",
    "event_type",
)

_TIME_FIELDS = {"starttime": "started_at", "answertime": "answered_at", "endtime": "ended_at"}
_INT_FIELDS = {"total_duration": "total_seconds", "holding_duration": "hold_seconds", "objectId": "object_id"}
_PHONE_FIELDS = {"hotline": "hotline", "caller_number": "caller_number", "destination_number": "destination_number"}
# Several spellings of one field: the first present wins within one event.
_ALIASES: dict[str, tuple[str, ...]] = {
    "transaction_id": ("transactionID", "transactionId", "transaction_id", "transactionid"),
    "agent": ("agent", "userName", "username", "user_name"),
}
_TEXT_FIELDS = {"call_status": "call_status", "recording_url": "recording_url", "eventType": "event_type"}
_EPOCH_MS = 10**11  # an epoch number above this is in milliseconds


@dataclass(frozen=True)
class Event:
    """One delivery, normalised. `values` holds only present fields."""

    source: Source
    values: Mapping[str, Any]
    flags: tuple[str, ...] = ()

    @property
    def lifecycle(self) -> int:
        if "ended_at" in self.values:
            return 2
        if "answered_at" in self.values:
            return 1
        return 0


def call_id_of(payload: Mapping[str, Any]) -> str | None:
    """The call id as text: a non-empty string, or an integer's decimal form."""
    raw = payload.get("call_id")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer() and math.isfinite(raw):
        return str(int(raw))
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


def normalize(payload: Mapping[str, Any], source: Source, zone: ZoneInfo, country_code: str = "84") -> Event:
    """Turn one raw payload into an Event; bad values become absent and flagged."""
    values: dict[str, Any] = {}
    flags: list[str] = []
    get = payload.get
    # Text values: a string is stripped, empty means absent (`_text` for the
    # other types). This runs for every delivery, so the common case (a
    # string) is tested inline rather than through a function call.

    raw = get("direction")
    if raw is not None:
        direction = raw.strip() if type(raw) is str else _text(raw, "direction", flags)
        if direction:
            d = direction.lower()
            if d in ("inbound", "outbound"):
                values["direction"] = d
            elif d in ("0", "in", "incoming"):
                values["direction"] = "inbound"
            elif d in ("1", "out", "outgoing"):
                values["direction"] = "outbound"
            else:
                flags.append("direction")

    for key, column in _TEXT_FIELDS.items():
        raw = get(key)
        if raw is not None:
            v = raw.strip() if type(raw) is str else _text(raw, key, flags)
            if v:
                values[column] = v
    raw = get("hangup_by")
    if raw is not None:
        v = raw.strip() if type(raw) is str else _text(raw, "hangup_by", flags)
        if v:
            values["hangup_by"] = v.lower()
    if source == "history":
        raw = get("source")
        if raw is not None:
            v = raw.strip() if type(raw) is str else _text(raw, "source", flags)
            if v:
                values["history_source"] = v

    for key, column in _PHONE_FIELDS.items():
        raw = get(key)
        if raw is not None:
            v = raw.strip() if type(raw) is str else _text(raw, key, flags)
            if v:
                # A number we cannot canonicalise (`anonymous`, a SIP URI, a masked
                # `03899xxx`) is kept as sent: it is still what a person searches for.
                values[column] = canonical_phone(v, country_code) or v

    for column, keys in _ALIASES.items():
        for key in keys:
            raw = get(key)
            if raw is None:
                continue
            if type(raw) is str:
                v = raw.strip()
            elif column == "agent" and isinstance(raw, list):
                # searchCallV1 takes `agent` as a list; accept a list of names.
                names = [str(x).strip() for x in raw if isinstance(x, (str, int)) and not isinstance(x, bool)]
                if len(names) != len(raw):
                    flags.append(key)
                    continue
                v = ",".join(n for n in names if n)
            else:
                v = _text(raw, key, flags)
            if v:
                values[column] = v
                break

    for key, column in _TIME_FIELDS.items():
        raw = get(key)
        if raw is None or raw == "":
            continue
        t = parse_time(raw, zone)
        if t is None:
            flags.append(key)
        else:
            values[column] = t

    for key, column in _INT_FIELDS.items():
        raw = get(key)
        if raw is None or raw == "":
            continue
        n = parse_int(raw)
        if n is None or (column != "object_id" and n < 0):
            flags.append(key)
        else:
            values[column] = n

    return Event(source=source, values=values, flags=tuple(sorted(set(flags))) if flags else ())


def _text(raw: object, key: str, flags: list[str]) -> str | None:
    """A text value that is not a plain string: a number's text, or absent and flagged."""
    if raw is None:
        return None
    if isinstance(raw, (bool, dict, list)):
        flags.append(key)
        return None
    return str(raw).strip() or None


def parse_time(raw: object, zone: ZoneInfo) -> datetime | None:
    """Alohub's `YYYY-MM-DD HH:mm:ss` in `zone`, ISO 8601 (with or without offset), or epoch seconds/ms."""
    if type(raw) is str:  # the common case, first
        return _parse_time_text(raw, zone)
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw) or raw <= 0:
            return None
        seconds = raw / 1000 if raw > _EPOCH_MS else raw
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(raw, str):
        return None
    return _parse_time_text(raw, zone)


def _parse_time_text(raw: str, zone: ZoneInfo) -> datetime | None:
    s = raw.strip()
    # isdigit() alone also accepts digits int() refuses ("²"); more than 20
    # digits is no epoch time (and over 4,300 int() refuses outright).
    if s.isascii() and s.isdigit():
        return parse_time(int(s), zone) if len(s) <= 20 else None
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    if not 1970 <= t.year <= 2200:
        return None
    if t.tzinfo is None:
        # The same instant as t.replace(tzinfo=zone).astimezone(timezone.utc),
        # at a third of the cost (datetime.replace is slow).
        return datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond,
                        timezone.utc) - zone.utcoffset(t)
    return t.astimezone(timezone.utc)


def parse_int(raw: object) -> int | None:
    """A whole number, from an int, an integral float, or a numeric string (`"300"`, `"300.0"`)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if abs(raw) < 2**31 else None
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() and abs(raw) < 2**31 else None
    if isinstance(raw, str):
        s = raw.strip()
        try:
            return parse_int(int(s))
        except ValueError:
            try:
                return parse_int(float(s))
            except ValueError:
                return None
    return None


def rank_of(event: Event) -> int:
    """The rank of an event's values: lifecycle first, then source (0..5)."""
    return event.lifecycle * 2 + SOURCE_RANK[event.source]


@dataclass
class Folded:
    """The merged call: `values` maps every field of FIELDS (None when absent);
    `ranks` the rank of each present field's winning value, so that a folded
    row can be merged again (in SQL, by the same rule) with later events."""

    values: dict[str, Any]
    ranks: dict[str, int]
    flagged: bool
    sources: frozenset[str] = field(default_factory=frozenset)


def fold(events: Iterable[Event]) -> Folded:
    """Per field, the value of highest (rank, value). Values of one field have
    one type (datetime, int or str), compared as Python does: strings by code
    point, which is what PostgreSQL's "C" collation does on UTF-8."""
    if not isinstance(events, (list, tuple)):
        events = list(events)
    if len(events) == 1:
        # One event (most calls of a backfill batch): its values are the row.
        (ev,) = events
        vals = ev.values
        return Folded(
            values={name: vals.get(name) for name in FIELDS},
            ranks=dict.fromkeys(vals, rank_of(ev)),
            flagged=bool(ev.flags),
            sources=frozenset((ev.source,)),
        )
    best: dict[str, tuple[int, Any]] = {}
    flagged = False
    sources: set[str] = set()
    for ev in events:
        flagged = flagged or bool(ev.flags)
        sources.add(ev.source)
        r = rank_of(ev)
        for name, value in ev.values.items():
            current = best.get(name)
            if current is None or (r, value) > current:
                best[name] = (r, value)
    return Folded(
        values={name: (best[name][1] if name in best else None) for name in FIELDS},
        ranks={name: rv[0] for name, rv in best.items()},
        flagged=flagged,
        sources=frozenset(sources),
    )
