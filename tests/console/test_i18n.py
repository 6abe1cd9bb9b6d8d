"""Languages: catalogues complete, the reader's choice, the locale's numbers."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from console.i18n import LANGUAGES, Locale, catalogue, negotiate

TEMPLATES = Path(__file__).parents[2] / "console" / "templates"


def test_catalogues_have_the_same_keys_and_every_key_used() -> None:
    keys = {lang: set(catalogue(lang)) for lang in LANGUAGES}
    assert keys["en"] == keys["vi"]
    used = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r'_\("([a-z_.]+[a-z_])"', path.read_text(encoding="utf-8")))
    assert used <= keys["en"], used - keys["en"]


def test_no_text_in_templates() -> None:
    """Words a reader sees come from the catalogues; templates hold markup and keys."""
    for path in TEMPLATES.glob("*.html"):
        html = path.read_text(encoding="utf-8")
        html = re.sub(r"{[{%#].*?[}%#]}", "", html, flags=re.S)  # Jinja expressions
        html = re.sub(r"<[^>]*>", "", html)  # tags and their attributes
        # The product's name, and each language's own name in the switch (never translated).
        allowed = {"callstore", "SHA", "English", "Tiếng", "Việt"}
        words = [w for w in re.findall(r"\w{3,}", html) if not w.isdigit() and w not in allowed]
        assert words == [], (path.name, words)


def test_negotiation() -> None:
    assert negotiate(None, "vi-VN,vi;q=0.9,en-US;q=0.8") == "vi"
    assert negotiate(None, "fr-FR, en;q=0.5, vi;q=0.4") == "en"
    assert negotiate(None, "de") == "en"
    assert negotiate("vi", "en") == "vi"  # the switch wins
    assert negotiate("xx", "vi;q=abc, vi") == "vi"
    assert negotiate(None, None) == "en"


def test_numbers_percentages_durations_and_times() -> None:
    vi, en = Locale("vi", ZoneInfo("Asia/Ho_Chi_Minh")), Locale("en", ZoneInfo("Asia/Ho_Chi_Minh"))
    assert (vi.number(1234), en.number(1234)) == ("1.234", "1,234")
    assert (vi.number(1234567.891, 2), en.number(1234567.891, 2)) == ("1.234.567,89", "1,234,567.89")
    assert (vi.percent(0.853), en.percent(0.853)) == ("85,3 %", "85.3%")
    assert vi.percent(None) == "–" and vi.number(None) == "–"
    assert en.seconds(65) == "1:05" and en.seconds(3725) == "1:02:05" and en.seconds(None) == "–"
    at = datetime(2026, 12, 1, 17, 30, tzinfo=timezone.utc)  # 00:30 the next day in Hanoi
    assert vi.when(at) == "02/12/2026 00:30:00" and en.when(at, seconds=False) == "2026-12-02 00:30"
    assert vi.gettext("alerts.callers", n=3) == "3 người gọi"
