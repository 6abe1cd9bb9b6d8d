"""One canonical form for phone numbers, so that every spelling compares equal.

Alohub sends Vietnamese numbers in national form (`0912345678`); people search
with `+84 912 345 678`, `84912345678` or `091-234-5678`. The canonical form is
E.164 (`+84912345678`) for anything that looks like a subscriber number, and
the bare digits for short numbers such as extensions (`888`) and hotlines
(`1900xxxx`, `1800xxxx`), which have no international form.
"""

from __future__ import annotations

import re
from functools import lru_cache

_SEPARATORS = re.compile(r"[\s\-.()/]")


@lru_cache(maxsize=8192)  # hotlines, extensions and regular callers repeat
def canonical_phone(value: str, country_code: str = "84") -> str | None:
    """Return the canonical form of `value`, or None when it is not a number."""
    s = _SEPARATORS.sub("", value.strip())
    if not s:
        return None
    plus = s.startswith("+")
    if plus:
        s = s[1:]
    elif s.startswith("00") and len(s) > 4:
        plus, s = True, s[2:]
    if not s.isdigit() or len(s) > 15:
        return None
    if plus:
        return "+" + s
    # Service numbers (1800/1900 in Vietnam) and extensions have no E.164 form.
    if len(s) <= 6 or s.startswith(("1800", "1900")):
        return s
    if s.startswith("0") and not s.startswith("00"):
        return f"+{country_code}{s[1:]}"
    if s.startswith(country_code) and len(s) >= len(country_code) + 8:
        return "+" + s
    return s


def mask_phone(value: str | None) -> str | None:
    """Hide all but the last three digits, for logs."""
    if not value:
        return value
    return "*" * max(len(value) - 3, 0) + value[-3:]
