"""Queue reports (`/api/reports/queues`, `callstore report queues`).

Both read analytics.queue_stats_* (the BI views) as they are, with one
parser for their parameters, so the CLI, the API and the dashboards show the
same figures. A report never refreshes the rollups (nor waits for a refresh):
the scheduled job does, every few seconds, so requests never queue behind
each other or behind a lock.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.settings import Settings

VIEWS = {"15m": "analytics.queue_stats_15m", "hour": "analytics.queue_stats_hourly", "day": "analytics.queue_stats_daily"}
#: Longest range per interval, so one request cannot ask for millions of rows.
MAX_RANGE = {"15m": timedelta(days=31), "hour": timedelta(days=366), "day": timedelta(days=3660)}
FORMATS = ("json", "csv", "table")

COLUMNS = (
    "tenant_id", "queue_id", "queue_name", "bucket_start", "bucket_local",
    "offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
    "answered_within_sla", "abandoned_within_sla",
    "service_level", "service_level_answered", "service_level_abandon_ok", "abandon_rate",
    "asa_seconds", "aht_seconds", "max_wait_seconds",
)
UNASSIGNED = "unassigned"


class InvalidParameter(ValueError):
    """A report parameter that cannot be used; the message starts with its name."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param = param


@dataclass(frozen=True)
class QueueReportRequest:
    tenant_id: str
    start: datetime
    end: datetime
    interval: str
    #: None: every queue; "unassigned" or a queue id: that queue.
    queue: int | str | None
    format: str


def parse_request(params: Mapping[str, str | None], settings: Settings, formats: Sequence[str] = FORMATS) -> QueueReportRequest:
    """Validate `from`, `to`, `interval`, `queue`, `tenant`, `format` (raises InvalidParameter)."""
    known = {"from", "to", "interval", "queue", "tenant", "format"}
    for name in params:
        if name not in known:
            raise InvalidParameter(name, f"unknown parameter; use {', '.join(sorted(known))}")
    tenant_id = params.get("tenant") or None
    ids = [t.tenant_id for t in settings.tenants]
    if tenant_id is None:
        if len(ids) != 1:
            raise InvalidParameter("tenant", f"several tenants are configured; name one of {', '.join(ids)}")
        tenant_id = ids[0]
    elif tenant_id not in ids:
        raise InvalidParameter("tenant", f"unknown tenant {tenant_id!r}; configured: {', '.join(ids)}")
    zone = settings.tenant(tenant_id).zone

    interval = params.get("interval") or "hour"
    if interval not in VIEWS:
        raise InvalidParameter("interval", f"{interval!r} is not one of 15m, hour, day")
    raw_from = params.get("from")
    if not raw_from:
        raise InvalidParameter("from", "required: an ISO 8601 date or date-time")
    start = _when(raw_from, zone, "from")
    raw_to = params.get("to")
    end = _when(raw_to, zone, "to") if raw_to else datetime.now(zone)
    if end <= start:
        raise InvalidParameter("to", "must be after from (the end is exclusive)")
    if end - start > MAX_RANGE[interval]:
        raise InvalidParameter("to", f"at most {MAX_RANGE[interval].days} days of {interval} buckets per request")

    queue: int | str | None = None
    raw_queue = params.get("queue")
    if raw_queue:
        if raw_queue == UNASSIGNED:
            queue = UNASSIGNED
        else:
            try:
                queue = int(raw_queue)
            except ValueError:
                raise InvalidParameter("queue", f"{raw_queue!r} is not a queue id (Alohub callinId) or 'unassigned'") from None
    fmt = params.get("format") or "json"
    if fmt not in formats:
        raise InvalidParameter("format", f"{fmt!r} is not one of {', '.join(formats)}")
    return QueueReportRequest(tenant_id, start, end, interval, queue, fmt)


def _when(value: str, zone: ZoneInfo, param: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(param, f"{value!r} is not an ISO 8601 date or date-time") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=zone)


async def read_queue_report(conn: AsyncConnection, req: QueueReportRequest) -> list[dict[str, Any]]:
    """Rows of the view for `req`, oldest bucket first, unassigned first within a bucket."""
    queue_filter = ""
    params: dict[str, Any] = {"tenant": req.tenant_id, "start": req.start, "end": req.end}
    if req.queue == UNASSIGNED:
        queue_filter = "AND queue_id IS NULL"
    elif req.queue is not None:
        queue_filter = "AND queue_id = :queue"
        params["queue"] = req.queue
    sql = text(
        f"""
        SELECT {", ".join(COLUMNS)} FROM {VIEWS[req.interval]}
        WHERE tenant_id = :tenant AND bucket_start >= :start AND bucket_start < :end {queue_filter}
        ORDER BY bucket_start, queue_id NULLS FIRST
        """
    )
    return [dict(r._mapping) for r in await conn.execute(sql, params)]


async def queue_report(engine: AsyncEngine, settings: Settings, params: Mapping[str, str | None],
                       formats: Sequence[str] = FORMATS) -> tuple[str, bytes]:
    """Parse, read, render: (media type, body). Raises InvalidParameter."""
    req = parse_request(params, settings, formats)
    async with engine.connect() as conn:
        rows = await read_queue_report(conn, req)
    return render(req, rows)


def render(req: QueueReportRequest, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    if req.format == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["" if r[c] is None else _scalar(r[c]) for c in COLUMNS])
        return "text/csv; charset=utf-8", out.getvalue().encode()
    if req.format == "table":
        return "text/plain; charset=utf-8", _table(rows).encode()
    body = {
        "tenant_id": req.tenant_id,
        "interval": req.interval,
        "from": req.start.isoformat(),
        "to": req.end.isoformat(),
        "queue": req.queue,
        "columns": list(COLUMNS),
        "rows": [{c: _scalar(r[c]) for c in COLUMNS} for r in rows],
    }
    return "application/json", orjson.dumps(body)


def _scalar(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


_TABLE_COLUMNS = (
    ("bucket_local", 19), ("queue_id", 9), ("offered", 7), ("answered", 8), ("abandoned", 9), ("short_abandoned", 5),
    ("unanswered_other", 5), ("in_progress", 4), ("service_level", 6), ("abandon_rate", 6), ("asa_seconds", 6),
    ("aht_seconds", 6), ("max_wait_seconds", 6),
)
_HEADINGS = {"bucket_local": "bucket", "queue_id": "queue", "short_abandoned": "short", "unanswered_other": "other",
             "in_progress": "live", "service_level": "SL", "abandon_rate": "aband%", "asa_seconds": "ASA",
             "aht_seconds": "AHT", "max_wait_seconds": "maxwt"}


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["  ".join(_HEADINGS.get(c, c).rjust(w) for c, w in _TABLE_COLUMNS)]
    for r in rows:
        cells = []
        for c, w in _TABLE_COLUMNS:
            v = r[c]
            if v is None:
                s = "-" if c != "queue_id" else UNASSIGNED[:w]
            elif c in ("service_level", "abandon_rate"):
                s = f"{100 * v:.1f}"
            elif isinstance(v, float):
                s = f"{v:.1f}"
            elif isinstance(v, datetime):
                s = v.strftime("%Y-%m-%d %H:%M")
            else:
                s = str(v)
            cells.append(s.rjust(w))
        lines.append("  ".join(cells))
    return "\n".join(lines) + "\n"
