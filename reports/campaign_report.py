"""Campaign reports (`/api/reports/campaigns`, `callstore report campaigns`).

Both read `analytics.campaign_daily` (the BI view, from the campaign rollup)
with one parser for their parameters, so the command line, the API and the
dashboards show the same figures. Days are the tenant's local days; `from`
and `to` are dates (or date-times, whose local date is taken), `to` exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reports.exports import printable, to_csv
from reports.queries import InvalidParameter, check_known, local_days, tenant_param
from store.settings import Settings

FORMATS = ("json", "csv", "table")
MAX_DAYS = 3660

COLUMNS = (
    "tenant_id", "campaign_id", "campaign_name", "local_date", "contacts_total", "contacts_dialled", "attempts",
    "connected_contacts", "connect_rate", "attempts_per_connected", "talk_seconds", "aht_seconds", "penetration",
    "contacts_processed",
)


@dataclass(frozen=True)
class CampaignReportRequest:
    tenant_id: str
    start: date
    end: date
    campaign: int | None
    format: str


def parse_request(params: Mapping[str, str | None], settings: Settings,
                  formats: Sequence[str] = FORMATS) -> CampaignReportRequest:
    """Validate `from`, `to`, `campaign`, `tenant`, `format` (raises InvalidParameter naming the parameter)."""
    check_known(params, {"from", "to", "campaign", "tenant", "format"})
    tenant_id = tenant_param(params, settings)
    zone = settings.tenant(tenant_id).zone
    start, end = local_days(params, zone, MAX_DAYS)
    campaign: int | None = None
    raw_campaign = params.get("campaign")
    if raw_campaign:
        if not (raw_campaign.isascii() and raw_campaign.isdigit()) or not 0 < int(raw_campaign) < 2**63:
            raise InvalidParameter("campaign", f"{raw_campaign!r} is not a campaign id (a positive whole number)")
        campaign = int(raw_campaign)
    fmt = (params.get("format") or "json").lower()
    if fmt not in formats:
        raise InvalidParameter("format", f"{fmt!r} is not one of {', '.join(formats)}")
    return CampaignReportRequest(tenant_id, start, end, campaign, fmt)


async def read_campaign_report(conn: AsyncConnection, req: CampaignReportRequest) -> list[dict[str, Any]]:
    """Rows of analytics.campaign_daily for `req`, by campaign then day."""
    params: dict[str, Any] = {"tenant": req.tenant_id, "start": req.start, "end": req.end}
    campaign_filter = ""
    if req.campaign is not None:
        campaign_filter = "AND d.campaign_id = :campaign"
        params["campaign"] = req.campaign
    sql = text(
        f"""
        SELECT d.tenant_id, d.campaign_id, c.name AS campaign_name, d.local_date, d.contacts_total,
               d.contacts_dialled, d.attempts, d.connected_contacts, d.connect_rate, d.attempts_per_connected,
               d.talk_seconds, d.aht_seconds, d.penetration, d.contacts_processed
        FROM analytics.campaign_daily d
        JOIN callstore.campaigns c ON c.tenant_id = d.tenant_id AND c.campaign_id = d.campaign_id
        WHERE d.tenant_id = :tenant AND d.local_date >= :start AND d.local_date < :end {campaign_filter}
        ORDER BY d.campaign_id, d.local_date
        """
    )
    return [dict(r._mapping) for r in await conn.execute(sql, params)]


async def read_campaigns(conn: AsyncConnection, tenant_id: str) -> list[dict[str, Any]]:
    """Every campaign of the tenant as analytics.campaigns has it (followed or not), by id."""
    sql = text(
        """
        SELECT campaign_id, name, lists, contacts_total, contacts_pending, contacts_in_call, contacts_processed,
               contacts_removed, first_synced_at, last_synced_at, last_error, followed
        FROM analytics.campaigns WHERE tenant_id = :tenant ORDER BY campaign_id
        """
    )
    return [dict(r._mapping) for r in await conn.execute(sql, {"tenant": tenant_id})]


async def campaign_report(engine: AsyncEngine, settings: Settings, params: Mapping[str, str | None],
                          formats: Sequence[str] = FORMATS) -> tuple[str, bytes]:
    """Parse, read, render: (media type, body). Raises InvalidParameter."""
    req = parse_request(params, settings, formats)
    async with engine.connect() as conn:
        rows = await read_campaign_report(conn, req)
    return render(req, rows)


def render(req: CampaignReportRequest, rows: list[dict[str, Any]]) -> tuple[str, bytes]:
    if req.format == "csv":
        # The campaign name is typed by someone: never a formula in a spreadsheet.
        return "text/csv; charset=utf-8", to_csv(COLUMNS, rows, text_keys=("campaign_name",)).encode()
    if req.format == "table":
        return "text/plain; charset=utf-8", _table(rows).encode()
    body = {
        "tenant_id": req.tenant_id,
        "from": req.start.isoformat(),
        "to": req.end.isoformat(),
        "campaign": req.campaign,
        "columns": list(COLUMNS),
        "rows": [{c: _scalar(r[c]) for c in COLUMNS} for r in rows],
    }
    return "application/json", orjson.dumps(body)


def _scalar(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (datetime, date)) else v


_TABLE = (
    ("campaign", "campaign_id"), ("name", "campaign_name"), ("day", "local_date"), ("contacts", "contacts_total"),
    ("dialled", "contacts_dialled"), ("attempts", "attempts"), ("connected", "connected_contacts"),
    ("connect rate", "connect_rate"), ("attempts/connected", "attempts_per_connected"),
    ("talk time", "talk_seconds"), ("avg handle", "aht_seconds"), ("penetration", "penetration"),
    ("processed", "contacts_processed"),
)
_PERCENT = {"connect_rate", "penetration"}
_DURATION = {"talk_seconds", "aht_seconds"}


def _cell(column: str, v: Any) -> str:
    if v is None:
        return "-"
    if column in _PERCENT:
        return f"{100 * v:.1f} %"
    if column in _DURATION:
        s = int(round(v))
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if isinstance(v, float):
        return f"{v:.2f}"
    return printable(str(v))  # a name typed by someone: no control characters on a terminal


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no campaign activity in this range (is the campaign followed? `callstore campaigns list`)\n"
    cells = [[_cell(c, r[c]) for _, c in _TABLE] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, (h, _) in enumerate(_TABLE)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, ((h, _), w) in enumerate(zip(_TABLE, widths)))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    lines += ["", "dialled: contacts with an attempt that day; connected: of those, answered at least once;",
              "penetration: contacts dialled so far / contacts in the campaign at the end of the day;",
              "talk time and avg handle: answered and ended attempts (h:mm:ss)."]
    return "\n".join(lines) + "\n"
