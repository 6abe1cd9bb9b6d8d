"""Query parameters of the read API, checked: a bad one is a 400 naming it.

Values are only ever bound into SQL, never spliced; what is refused here is
what Postgres could not hold (NUL) or what makes no sense (dates out of range,
limits out of bounds), so that no input reaches the database as a 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time

MAX_TEXT = 256


class BadParameter(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"{name}: {problem}")


def text_param(params: Mapping[str, str], name: str, max_len: int = MAX_TEXT) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return check_text(name, value, max_len)


def check_text(name: str, value: str, max_len: int = MAX_TEXT) -> str:
    if "\x00" in value:
        raise BadParameter(name, "must not contain NUL")
    if len(value) > max_len:
        raise BadParameter(name, f"must be at most {max_len} characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise BadParameter(name, "is not valid UTF-8")
    return value


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not value.strip().isascii() or not value.strip().lstrip("-").isdigit() or len(value) > 12:
        raise BadParameter(name, f"{value[:40]!r} is not a whole number")
    n = int(value)
    if not lo <= n <= hi:
        raise BadParameter(name, f"must be between {lo} and {hi}")
    return n


def when_param(params: Mapping[str, str], name: str) -> datetime | None:
    """ISO 8601 date or date-time; naive values stay naive (the tenant's zone)."""
    value = text_param(params, name, 64)
    if value is None:
        return None
    try:
        if len(value) == 10:
            t = datetime.combine(date.fromisoformat(value), time())
        else:
            t = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not an ISO 8601 date or date-time") from None
    if not 1900 <= t.year <= 2999:
        raise BadParameter(name, "year must be between 1900 and 2999")
    return t


def enum_param(params: Mapping[str, str], name: str, accepted: Sequence[str]) -> str | None:
    """One of `accepted`, compared case-insensitively and returned lower-case; anything else names them."""
    value = text_param(params, name, 64)
    if value is None:
        return None
    if value.lower() not in accepted:
        raise BadParameter(name, f"{value[:40]!r} is not one of {', '.join(accepted)}")
    return value.lower()
