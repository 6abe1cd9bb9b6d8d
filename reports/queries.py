"""Queue reports (`callstore report queues`, `GET /api/reports/queues`).

Both read the BI views analytics.queue_stats_15m / _hourly / _daily /
_weekly / _monthly as they are, with one parser for their parameters, so the
command line, the API and the dashboards show the same figures. A report
never refreshes the rollups (nor waits for a refresh): the scheduled job
does, every few seconds, so requests never queue behind each other or behind
a lock. The totals row sums the counts and the parts of every ratio over the
rows shown, then applies the metric formulas to those sums: a ratio is
never averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reports.exports import XLSX_MEDIA_TYPE, Col, Sheet, printable, to_csv, to_text, to_xlsx
from store.settings import Settings

VIEWS = {
    "15m": "analytics.queue_stats_15m", "hour": "analytics.queue_stats_hourly", "day": "analytics.queue_stats_daily",
    "week": "analytics.queue_stats_weekly", "month": "analytics.queue_stats_monthly",
}
INTERVALS = tuple(VIEWS)
#: Longest range per interval, so one request cannot ask for millions of rows.
MAX_RANGE = {"15m": timedelta(days=31), "hour": timedelta(days=366), "day": timedelta(days=3660),
             "week": timedelta(days=3660), "month": timedelta(days=3660)}
FORMATS = ("json", "csv", "table", "xlsx")

COLUMNS = (
    "tenant_id", "queue_id", "queue_name", "bucket_start", "bucket_local",
    "offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
    "answered_within_sla", "abandoned_within_sla",
    "service_level", "service_level_answered", "service_level_abandon_ok", "abandon_rate",
    "asa_seconds", "aht_seconds", "max_wait_seconds",
)
COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
          "answered_within_sla", "abandoned_within_sla")
#: The parts of asa and aht, read so that totals can be recomputed from them.
PARTS = ("wait_answered_count", "wait_answered_sum", "talk_count", "talk_sum")
UNASSIGNED = "unassigned"


class InvalidParameter(ValueError):
    """A report parameter that cannot be used; the message starts with its name."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param = param


@dataclass(frozen=True)
class QueueReportRequest:
    tenant_id: str
    zone: ZoneInfo
    start: datetime
    end: datetime
    interval: str
    #: None: every queue; else an id, a name or "unassigned" as given (see resolve_queue).
    queue: str | None
    format: str


def tenant_param(params: Mapping[str, str | None], settings: Settings) -> str:
    """The `tenant` parameter, or the only tenant configured."""
    tenant_id = params.get("tenant") or None
    ids = [t.tenant_id for t in settings.tenants]
    if tenant_id is None:
        if len(ids) != 1:
            raise InvalidParameter("tenant", f"several tenants are configured; name one of {', '.join(ids)}")
        return ids[0]
    if tenant_id not in ids:
        raise InvalidParameter("tenant", f"unknown tenant {tenant_id!r}; configured: {', '.join(ids)}")
    return tenant_id


def check_known(params: Mapping[str, str | None], known: set[str]) -> None:
    for name in params:
        if name not in known:
            raise InvalidParameter(name, f"unknown parameter; use {', '.join(sorted(known))}")


def choice_param(params: Mapping[str, str | None], name: str, accepted: Sequence[str], default: str) -> str:
    """An enumerated parameter, case-insensitive; anything else names the accepted values."""
    value = params.get(name) or default
    if value.lower() not in accepted:
        raise InvalidParameter(name, f"{value[:40]!r} is not one of {', '.join(accepted)}")
    return value.lower()


def text_value(params: Mapping[str, str | None], name: str, max_len: int = 256) -> str | None:
    """A free-text parameter (a name): at most `max_len` characters, no NUL, valid UTF-8."""
    value = params.get(name) or None
    if value is not None and ("\x00" in value or len(value) > max_len
                              or any(0xD800 <= ord(c) <= 0xDFFF for c in value)):
        raise InvalidParameter(name, f"text of at most {max_len} characters, without NUL")
    return value


def parse_request(params: Mapping[str, str | None], settings: Settings, formats: Sequence[str] = FORMATS) -> QueueReportRequest:
    """Validate `from`, `to`, `interval`, `queue`, `tenant`, `format` (raises InvalidParameter)."""
    check_known(params, {"from", "to", "interval", "queue", "tenant", "format"})
    tenant_id = tenant_param(params, settings)
    zone = settings.tenant(tenant_id).zone
    interval = choice_param(params, "interval", INTERVALS, "hour")
    raw_from = params.get("from")
    if not raw_from:
        raise InvalidParameter("from", "required: an ISO 8601 date or date-time")
    start = period_start(when(raw_from, zone, "from"), zone, interval)
    raw_to = params.get("to")
    end = when(raw_to, zone, "to") if raw_to else datetime.now(zone)
    if end <= start:
        raise InvalidParameter("to", "must be after from (the end is exclusive)")
    if end - start > MAX_RANGE[interval]:
        raise InvalidParameter("to", f"at most {MAX_RANGE[interval].days} days of {interval} buckets per request")
    queue = text_value(params, "queue")
    fmt = choice_param(params, "format", formats, "json")
    return QueueReportRequest(tenant_id, zone, start, end, interval, queue, fmt)


def period_start(at: datetime, zone: ZoneInfo, interval: str) -> datetime:
    """For weeks and months, the local start of the period holding `at`.

    Asked from the 20th by month, a supervisor wants that month, not nothing:
    a row is a whole period, so its first day is where the range starts.
    Shorter intervals keep `at` (rows start in [from, to)).
    """
    day = at.astimezone(zone).date()
    if interval == "week":
        return datetime.combine(day - timedelta(days=day.weekday()), time(0), tzinfo=zone)
    if interval == "month":
        return datetime.combine(day.replace(day=1), time(0), tzinfo=zone)
    return at


def when(value: str, zone: ZoneInfo, param: str) -> datetime:
    """ISO 8601 date or date-time; without an offset it is in the tenant's zone."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(param, f"{value[:40]!r} is not an ISO 8601 date or date-time") from None
    if not 1900 <= t.year <= 2999:
        raise InvalidParameter(param, "year must be between 1900 and 2999")
    return t if t.tzinfo is not None else t.replace(tzinfo=zone)


_QUEUES = text(
    """
    SELECT q.queue_id, q.name FROM callstore.queues q WHERE q.tenant_id = :tenant
    UNION
    SELECT m.queue_id, NULL FROM callstore.queue_mappings m
    WHERE m.tenant_id = :tenant
      AND NOT EXISTS (SELECT 1 FROM callstore.queues q WHERE q.tenant_id = m.tenant_id AND q.queue_id = m.queue_id)
    ORDER BY 1
    """
)


def local_days(params: Mapping[str, str | None], zone: ZoneInfo, max_days: int) -> tuple[date, date]:
    """`from` (required) and `to` (exclusive; default tomorrow, so today is in)
    as local days of `zone`; a date-time counts as its local day."""
    def day(name: str) -> date:
        raw = params.get(name) or ""
        moment = when(raw, zone, name)
        if not 1900 <= moment.year <= 2999:
            raise InvalidParameter(name, f"{raw!r} is out of range (years 1900-2999)")
        return moment.astimezone(zone).date()

    if not params.get("from"):
        raise InvalidParameter("from", "required: an ISO 8601 date (a local day) or date-time")
    first = day("from")
    end = day("to") if params.get("to") else datetime.now(zone).date() + timedelta(days=1)
    if end <= first:
        raise InvalidParameter("to", "must be a later day than from (the end is exclusive)")
    if (end - first).days > max_days:
        raise InvalidParameter("to", f"at most {max_days} days per request")
    return first, end


async def resolve_queue(conn: AsyncConnection, tenant_id: str, raw: str | None) -> int | str | None:
    """A queue given by id, by name (exact, else ignoring case) or as 'unassigned'.

    A queue the tenant does not have (in the catalogue or the manual
    mappings) raises InvalidParameter listing the ones it has.
    """
    if raw is None:
        return None
    if raw.strip().lower() == UNASSIGNED:
        return UNASSIGNED
    queues = [(int(r.queue_id), r.name) for r in await conn.execute(_QUEUES, {"tenant": tenant_id})]
    value = raw.strip()
    if value.isascii() and value.isdigit():
        if any(q == int(value) for q, _ in queues):
            return int(value)
    for fold in (False, True):
        ids = sorted({q for q, name in queues
                      if name is not None and (name.casefold() == value.casefold() if fold else name == value)})
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise InvalidParameter("queue", f"{value[:60]!r} names several queues ({', '.join(map(str, ids))}); "
                                            "give its id")
    # Names come from Alohub: printable only, so that the message stays one harmless line.
    known = ", ".join(f"{printable(name)} ({q})" if name else str(q) for q, name in queues[:30])
    more = f" and {len(queues) - 30} more" if len(queues) > 30 else ""
    raise InvalidParameter("queue", f"no queue {value[:60]!r} in tenant {tenant_id}; "
                                    f"known: {known or 'none'}{more}, or unassigned")


async def read_queue_report(conn: AsyncConnection, req: QueueReportRequest, queue: int | str | None) -> list[dict[str, Any]]:
    """Rows of the view for `req`, oldest bucket first, unassigned first within a bucket."""
    queue_filter = ""
    params: dict[str, Any] = {"tenant": req.tenant_id, "start": req.start, "end": req.end}
    if queue == UNASSIGNED:
        queue_filter = "AND queue_id IS NULL"
    elif queue is not None:
        queue_filter = "AND queue_id = :queue"
        params["queue"] = queue
    sql = text(
        f"""
        SELECT {", ".join((*COLUMNS, *PARTS))} FROM {VIEWS[req.interval]}
        WHERE tenant_id = :tenant AND bucket_start >= :start AND bucket_start < :end {queue_filter}
        ORDER BY bucket_start, queue_id NULLS FIRST
        """
    )
    return [dict(r._mapping) for r in await conn.execute(sql, params)]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def ratios(c: Mapping[str, Any]) -> dict[str, float | None]:
    """The queue ratios of summed counts: the formulas of the views, never an average of ratios."""
    handled = c["answered"] + c["abandoned"] + c["unanswered_other"] - c["short_abandoned"]
    return {
        "service_level": _ratio(c["answered_within_sla"], handled),
        "service_level_answered": _ratio(c["answered_within_sla"], c["answered"]),
        "service_level_abandon_ok": _ratio(c["answered_within_sla"] + c["abandoned_within_sla"],
                                           c["answered"] + c["abandoned"]),
        "abandon_rate": _ratio(c["abandoned"] - c["short_abandoned"], handled),
        "asa_seconds": _ratio(c["wait_answered_sum"], c["wait_answered_count"]),
        "aht_seconds": _ratio(c["talk_sum"], c["talk_count"]),
    }


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and parts summed over `rows`, ratios recomputed from the sums, the largest wait."""
    summed: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in (*COUNTS, *PARTS)}
    waits = [r["max_wait_seconds"] for r in rows if r["max_wait_seconds"] is not None]
    return {**{k: summed[k] for k in COUNTS}, **ratios(summed), "max_wait_seconds": max(waits) if waits else None}


async def queue_report(engine: AsyncEngine, settings: Settings, params: Mapping[str, str | None],
                       formats: Sequence[str] = FORMATS) -> tuple[str, bytes]:
    """Parse, read, render: (media type, body). Raises InvalidParameter."""
    req = parse_request(params, settings, formats)
    async with engine.connect() as conn:
        queue = await resolve_queue(conn, req.tenant_id, req.queue)
        rows = await read_queue_report(conn, req, queue)
    return render(req, queue, rows)


PERIOD_FORMATS = {"15m": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d",
                  "month": "%Y-%m"}

_SHEET_COLUMNS = (
    Col("bucket_local", "Period", "period"),
    Col("queue_label", "Queue", "text"),
    Col("offered", "Offered", "count", "inbound calls of the queue that started in the period"),
    Col("answered", "Answered", "count", "offered calls that were answered (serviced)"),
    Col("abandoned", "Abandoned", "count", "callers who hung up before an answer, short ones included"),
    Col("short_abandoned", "Short", "count", "abandoned before the short-abandon threshold (5 s unless set per queue)"),
    Col("unanswered_other", "Other", "count", "ended without an answer, hung up by the system or an agent"),
    Col("in_progress", "Waiting", "count", "not answered and not ended yet"),
    Col("service_level", "Service level", "ratio",
        "answered within the SLA (20 s unless set per queue) / (answered + abandoned + other - short)"),
    Col("abandon_rate", "Abandon rate", "ratio", "(abandoned - short) / (answered + abandoned + other - short)"),
    Col("asa_seconds", "Avg wait (s)", "seconds", "mean wait of answered calls, in seconds"),
    Col("aht_seconds", "Avg talk (s)", "seconds", "mean talk time of answered calls that ended, in seconds"),
    Col("max_wait_seconds", "Longest wait (s)", "count", "longest wait of an answered or abandoned call, in seconds"),
)
# The spreadsheet has every figure; the terminal the ones a supervisor reads first.
_XLSX_EXTRA = (
    Col("answered_within_sla", "Answered in SLA", "count", "answered with a wait within the SLA"),
    Col("abandoned_within_sla", "Abandoned in SLA", "count", "abandoned with a wait within the SLA"),
    Col("service_level_answered", "SL of answered", "ratio", "answered within the SLA / answered"),
    Col("service_level_abandon_ok", "SL abandons allowed", "ratio",
        "(answered + abandoned within the SLA) / (answered + abandoned)"),
)


def queue_label(row: Mapping[str, Any]) -> str:
    if row["queue_id"] is None:
        return UNASSIGNED
    return str(row["queue_name"]) if row.get("queue_name") else f"queue {row['queue_id']}"


def _sheet(req: QueueReportRequest, rows: list[dict[str, Any]], total: dict[str, Any], xlsx: bool) -> Sheet:
    columns = _SHEET_COLUMNS[:-1] + (_XLSX_EXTRA if xlsx else ()) + _SHEET_COLUMNS[-1:]
    offset = req.start.astimezone(req.zone).strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    notes = [f"Times are local to tenant {req.tenant_id} ({req.zone.key}, UTC{offset}); the period is where a call "
             f"started; '-': nothing to compute from."]
    if req.interval == "week":
        notes.append("Weeks start on Monday.")
    return Sheet(f"Queues by {req.interval}", columns, [r | {"queue_label": queue_label(r)} for r in rows],
                 total | {"bucket_local": "Total"}, notes, PERIOD_FORMATS[req.interval])


def render(req: QueueReportRequest, queue: int | str | None, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    total = totals(rows)
    rows = [r | {"bucket_start": r["bucket_start"].astimezone(req.zone)} for r in rows]
    if req.format == "csv":
        csv_text = to_csv(COLUMNS, [*rows, total | {"queue_name": "Total"}], text_keys=("queue_name",))
        return "text/csv; charset=utf-8", csv_text.encode()
    if req.format == "table":
        return "text/plain; charset=utf-8", to_text(_sheet(req, rows, total, xlsx=False)).encode()
    if req.format == "xlsx":
        return XLSX_MEDIA_TYPE, to_xlsx(_sheet(req, rows, total, xlsx=True))
    body = {
        "tenant_id": req.tenant_id,
        "timezone": req.zone.key,
        "interval": req.interval,
        "from": req.start.astimezone(req.zone).isoformat(),
        "to": req.end.astimezone(req.zone).isoformat(),
        "queue": queue,
        "columns": list(COLUMNS),
        "rows": [{c: _scalar(r[c]) for c in COLUMNS} for r in rows],
        "totals": total,
    }
    return "application/json", orjson.dumps(body)


def _scalar(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v
