"""Languages of the console: message catalogues, the reader's choice, numbers and times.

The catalogues are JSON files in `console/messages/` (one per language, the
same keys in each; a test checks it). A page's language is the `lang` cookie
(set by the switcher), else the best of `Accept-Language`, else English.
Numbers and percentages follow the language's conventions: Vietnamese
groups thousands with `.` and writes `85,3 %`, English `1,234` and `85.3%`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

LANGUAGES = ("en", "vi")
DEFAULT = "en"
COOKIE = "lang"
_DIR = Path(__file__).parent / "messages"


@cache
def catalogue(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    best, best_q = DEFAULT, -1.0
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


@dataclass(frozen=True)
class Locale:
    lang: str
    zone: ZoneInfo

    def gettext(self, key: str, **values: object) -> str:
        text = catalogue(self.lang).get(key) or catalogue(DEFAULT).get(key) or key
        return text.format(**values) if values else text

    @property
    def _seps(self) -> tuple[str, str]:
        return (".", ",") if self.lang == "vi" else (",", ".")

    def number(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "–"
        group, decimal = self._seps
        text = f"{value:,.{digits}f}"
        return text.replace(",", "\0").replace(".", decimal).replace("\0", group)

    def percent(self, ratio: float | None, digits: int = 1) -> str:
        if ratio is None:
            return "–"
        n = self.number(100 * ratio, digits)
        return f"{n} %" if self.lang == "vi" else f"{n}%"

    def seconds(self, value: float | int | None) -> str:
        """A duration as m:ss (h:mm:ss past an hour)."""
        if value is None:
            return "–"
        total = int(round(value))
        h, rest = divmod(total, 3600)
        m, s = divmod(rest, 60)
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

    def when(self, at: datetime | None, seconds: bool = True) -> str:
        """A time in the tenant's zone (dd/mm/yyyy in Vietnamese, ISO order in English)."""
        if at is None:
            return "–"
        local = at.astimezone(self.zone)
        clock = "%H:%M:%S" if seconds else "%H:%M"
        return local.strftime(f"%d/%m/%Y {clock}" if self.lang == "vi" else f"%Y-%m-%d {clock}")
