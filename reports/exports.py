"""A report as people read it: a text table with a legend, CSV, or one xlsx sheet.

A report is a list of columns (key, heading, kind), its rows, an optional
totals row and a legend. Kinds decide how a value is written: counts as
integers, ratios as percents with one decimal, seconds with one decimal,
local times as the tenant's wall clock. Nothing is cut: every column is as
wide as its widest cell.

Names come from Alohub (queue names, agent names): in a terminal, control
characters are shown as U+FFFD, so a name cannot move the cursor or change
colours; in CSV and xlsx a text cell that a spreadsheet would run as a
formula (=, +, -, @ first) is written as text, and xlsx cells get the
same replacement of control characters as the terminal.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Kind = Literal["text", "count", "ratio", "seconds", "duration", "period"]


@dataclass(frozen=True)
class Col:
    key: str
    heading: str
    kind: Kind
    #: One line of the legend under the table ("" = none).
    meaning: str = ""


@dataclass(frozen=True)
class Sheet:
    title: str
    columns: Sequence[Col]
    rows: Sequence[dict[str, Any]]
    totals: dict[str, Any] | None = None
    #: Lines printed after the column legend (zone, thresholds...).
    notes: Sequence[str] = field(default_factory=tuple)
    #: strftime format of "period" cells.
    period_format: str = "%Y-%m-%d %H:%M"


def printable(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    return "".join(c if c.isprintable() else "\ufffd" for c in value)


def _cell(col: Col, value: Any, period_format: str) -> str:
    if value is None:
        return "-"
    if col.kind == "ratio":
        return f"{100 * value:.1f} %"
    if col.kind == "seconds":
        return f"{value:.1f}"
    if col.kind == "duration":
        seconds = round(value)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if col.kind == "period" and isinstance(value, (datetime, date)):
        return value.strftime(period_format)
    return printable(str(value))


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in s)


def to_text(sheet: Sheet) -> str:
    """A fixed-width table, a totals row under a rule, then the legend."""
    body = [[_cell(c, r.get(c.key), sheet.period_format) for c in sheet.columns] for r in sheet.rows]
    totals = None
    if sheet.totals is not None:
        t = sheet.totals
        totals = ["" if t.get(c.key) is None and c.kind in ("text", "period") else _cell(c, t.get(c.key), sheet.period_format)
                  for c in sheet.columns]
    grid = [[c.heading for c in sheet.columns], *body, *([totals] if totals else [])]
    widths = [max(_width(row[i]) for row in grid) for i in range(len(sheet.columns))]

    def line(cells: list[str]) -> str:
        out = []
        for col, cell, w in zip(sheet.columns, cells, widths):
            pad = " " * (w - _width(cell))
            out.append(cell + pad if col.kind in ("text", "period") else pad + cell)
        return "  ".join(out).rstrip()

    lines = [line(grid[0]), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in body]
    if not body:
        lines.append("(no calls in this range)")
    if totals:
        lines += ["  ".join("-" * w for w in widths), line(totals)]
    legend = [(c.heading, c.meaning) for c in sheet.columns if c.meaning]
    if legend:
        w = max(len(h) for h, _ in legend)
        lines += ["", *(f"{h.ljust(w)}  {m}" for h, m in legend)]
    lines += list(sheet.notes)
    return "\n".join(lines) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A cell a spreadsheet takes as text: one starting with = + - @ (a formula) gets a leading '."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def to_csv(keys: Sequence[str], rows: Sequence[dict[str, Any]], text_keys: Sequence[str] = ()) -> str:
    """Machine-friendly CSV: column keys as the header, ISO times, ratios as fractions."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            if v is None:
                cells.append("")
            elif isinstance(v, (datetime, date)):
                cells.append(v.isoformat())
            elif k in text_keys and isinstance(v, str):
                cells.append(safe_text(v))
            else:
                cells.append(v)
        w.writerow(cells)
    return out.getvalue()


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_XLSX_FORMATS = {"count": "0", "ratio": "0.0%", "seconds": "0.0", "duration": "[h]:mm:ss"}


def to_xlsx(sheet: Sheet) -> bytes:
    """One sheet: headings, typed cells (numbers, percents, local date-times), totals, legend."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = sheet.title[:31]
    bold = Font(bold=True)
    ws.append([c.heading for c in sheet.columns])
    for cell in ws[1]:
        cell.font = bold
    ws.freeze_panes = "A2"
    period_xlsx = "yyyy-mm-dd hh:mm" if "%H" in sheet.period_format else "yyyy-mm-dd"
    if sheet.period_format == "%Y-%m":
        period_xlsx = "yyyy-mm"

    def put(row_index: int, values: dict[str, Any], total: bool) -> None:
        for j, col in enumerate(sheet.columns, start=1):
            v = values.get(col.key)
            cell = ws.cell(row=row_index, column=j)
            if v is None:
                continue
            if col.kind == "duration":
                cell.value = v / 86400  # a spreadsheet duration is a fraction of a day
            elif isinstance(v, datetime):
                cell.value = v.replace(tzinfo=None)
            elif isinstance(v, str):
                cell.value = printable(v)  # a workbook cannot hold control characters
            else:
                cell.value = v
            if isinstance(v, str):
                cell.data_type = "s"  # never a formula, whatever the name starts with
            elif col.kind == "period":
                cell.number_format = period_xlsx
            elif col.kind in _XLSX_FORMATS:
                cell.number_format = _XLSX_FORMATS[col.kind]
            if total:
                cell.font = bold

    for i, r in enumerate(sheet.rows, start=2):
        put(i, r, False)
    n = len(sheet.rows) + 2
    if sheet.totals is not None:
        put(n, sheet.totals, True)
        n += 1
    n += 1
    for col in sheet.columns:
        if col.meaning:
            ws.cell(row=n, column=1, value=col.heading).data_type = "s"
            ws.cell(row=n, column=2, value=col.meaning).data_type = "s"
            n += 1
    for note in sheet.notes:
        ws.cell(row=n, column=1, value=note).data_type = "s"
        n += 1
    for j, col in enumerate(sheet.columns, start=1):
        ws.column_dimensions[ws.cell(row=1, column=j).column_letter].width = max(10, len(col.heading) + 2)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
