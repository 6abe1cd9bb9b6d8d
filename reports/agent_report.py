"""Agent reports (`callstore report agents`, `GET /api/reports/agents`).

Per agent and local day, read from analytics.agent_daily, which reads the
agent rollup (reports/agent_rollups.py), never a scan of the calls. The
totals row sums the counts and seconds and recomputes the average handle
time from the summed talk time and the summed number of timed calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reports.exports import XLSX_MEDIA_TYPE, Col, Sheet, to_csv, to_text, to_xlsx
from reports.queries import FORMATS, check_known, choice_param, local_days, tenant_param, text_value
from store.settings import Settings

COLUMNS = ("tenant_id", "agent", "day", "day_start", "answered", "outbound", "talk_seconds", "hold_seconds",
           "aht_seconds")
MAX_DAYS = 3660


@dataclass(frozen=True)
class AgentReportRequest:
    tenant_id: str
    zone: ZoneInfo
    #: First local day, and the local day after the last (exclusive).
    first: date
    end: date
    agent: str | None
    format: str


def parse_request(params: Mapping[str, str | None], settings: Settings,
                  formats: Sequence[str] = FORMATS) -> AgentReportRequest:
    """Validate `from`, `to`, `agent`, `tenant`, `format` (raises InvalidParameter)."""
    check_known(params, {"from", "to", "agent", "tenant", "format"})
    tenant_id = tenant_param(params, settings)
    zone = settings.tenant(tenant_id).zone
    first, end = local_days(params, zone, MAX_DAYS)
    agent = text_value(params, "agent")
    fmt = choice_param(params, "format", formats, "json")
    return AgentReportRequest(tenant_id, zone, first, end, agent, fmt)


_READ = text(
    """
    SELECT tenant_id, agent, day, day_start, answered, outbound, talk_seconds, hold_seconds, aht_seconds, talk_count
    FROM analytics.agent_daily
    WHERE tenant_id = :tenant AND day >= :first AND day < :end AND (CAST(:agent AS text) IS NULL OR agent = :agent)
    ORDER BY day, agent
    """
)


async def read_agent_report(conn: AsyncConnection, req: AgentReportRequest) -> list[dict[str, Any]]:
    params = {"tenant": req.tenant_id, "first": req.first, "end": req.end, "agent": req.agent}
    return [dict(r._mapping) for r in await conn.execute(_READ, params)]


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sums over `rows`; aht = summed talk / summed timed calls (never an average of averages)."""
    out: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in ("answered", "outbound", "talk_seconds",
                                                                       "hold_seconds", "talk_count")}
    out["aht_seconds"] = out["talk_seconds"] / out["talk_count"] if out["talk_count"] else None
    return out


async def agent_report(engine: AsyncEngine, settings: Settings, params: Mapping[str, str | None],
                       formats: Sequence[str] = FORMATS) -> tuple[str, bytes]:
    """Parse, read, render: (media type, body). Raises InvalidParameter."""
    req = parse_request(params, settings, formats)
    async with engine.connect() as conn:
        rows = await read_agent_report(conn, req)
    return render(req, rows)


_SHEET_COLUMNS = (
    Col("day", "Day", "period"),
    Col("agent", "Agent", "text"),
    Col("answered", "Answered", "count", "inbound calls the agent answered"),
    Col("outbound", "Outbound", "count", "outbound calls the agent placed, answered or not"),
    Col("talk_seconds", "Talk time", "duration", "talk time (answer to end) of the agent's answered calls, h:mm:ss"),
    Col("hold_seconds", "Hold time", "duration", "time callers spent on hold (Alohub holding_duration), h:mm:ss"),
    Col("aht_seconds", "Avg handle time", "duration",
        "talk time / answered calls that ended, both directions, h:mm:ss"),
)


def render(req: AgentReportRequest, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    total = totals(rows)
    rows = [r | {"day_start": r["day_start"].astimezone(req.zone)} for r in rows]
    if req.format == "csv":
        csv_text = to_csv(COLUMNS, [*rows, total | {"agent": "Total"}], text_keys=("agent",))
        return "text/csv; charset=utf-8", csv_text.encode()
    if req.format in ("table", "xlsx"):
        sheet = Sheet("Agents by day", _SHEET_COLUMNS, rows, total | {"day": "Total"},
                      [f"Days are local to tenant {req.tenant_id} ({req.zone.key}); '-': nothing to compute from."],
                      "%Y-%m-%d")
        if req.format == "xlsx":
            return XLSX_MEDIA_TYPE, to_xlsx(sheet)
        return "text/plain; charset=utf-8", to_text(sheet).encode()
    body = {
        "tenant_id": req.tenant_id,
        "timezone": req.zone.key,
        "from": req.first.isoformat(),
        "to": req.end.isoformat(),
        "agent": req.agent,
        "columns": list(COLUMNS),
        "rows": [{c: r[c].isoformat() if isinstance(r[c], (date, datetime)) else r[c] for c in COLUMNS} for r in rows],
        "totals": {k: v for k, v in total.items() if k != "talk_count"},
    }
    return "application/json", orjson.dumps(body)
