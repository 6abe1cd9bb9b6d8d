"""What pages show, shaped from query results, and the parsing of their forms.

Figures are formatted here, once, in the reader's language (the wallboard's
refresh gets the same strings as the first render).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request

from console.i18n import Locale
from receiver.params import BadParameter, int_param, text_param, when_param
from reports.alerts.rules import DEFAULT_RULE, FIELDS, QueueId
from receiver.reports_api import check_report_params as api_check
from reports.exports import safe_text
from reports.queries import VIEWS, QueueReportRequest
from store.audit import AccessQuery
from store.calls_query import CallSearch, Cursor, BadCursor
from store.phone import canonical_phone
from store.settings import TenantSettings

OUTCOMES = ("answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress")
DIRECTIONS = ("inbound", "outbound")
INTERVALS = tuple(VIEWS)  # week and month appear here when the report queries offer them
COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress")


def tiles(rows: Sequence[Mapping[str, Any]], loc: Locale, firing: set[int | None]) -> list[dict[str, Any]]:
    """One tile per queue of today's daily row; a queue with a firing alert is marked."""
    out = []
    for r in rows:
        out.append({
            "queue_id": "unassigned" if r["queue_id"] is None else str(r["queue_id"]),
            "name": queue_name(r, loc),
            "figures": [
                ("offered", loc.number(r["offered"])), ("answered", loc.number(r["answered"])),
                ("abandoned", loc.number(r["abandoned"])), ("in_progress", loc.number(r["in_progress"])),
                ("service_level", loc.percent(r["service_level"])), ("asa_seconds", loc.seconds(r["asa_seconds"])),
                ("abandon_rate", loc.percent(r["abandon_rate"])), ("max_wait_seconds", loc.seconds(r["max_wait_seconds"])),
            ],
            "alarm": r["queue_id"] in firing,
        })
    return out


def queue_name(row: Mapping[str, Any], loc: Locale) -> str:
    if row["queue_id"] is None:
        return loc.gettext("queue.unassigned")
    return str(row["queue_name"] or row["queue_id"])


def empty_report() -> dict[str, Any]:
    return {"rows": [], "totals": [], "grand": None, "chart": {"labels": [], "series": {}}, "intervals": INTERVALS}


def _bucket_label(r: Mapping[str, Any], interval: str, loc: Locale) -> str:
    if interval in ("15m", "hour"):
        return loc.when(r["bucket_start"], seconds=False)
    return str(r["bucket_local"].strftime("%d/%m/%Y" if loc.lang == "vi" else "%Y-%m-%d"))


def report(rows: Sequence[Mapping[str, Any]], req: QueueReportRequest, loc: Locale) -> dict[str, Any]:
    """Bucket rows (as the CSV has them), per-queue count totals, and the charts' series.

    Totals are sums of counts only: a ratio over several buckets is not the
    mean of their ratios, and the console computes no metric of its own."""
    per_queue: dict[str, dict[str, Any]] = {}
    labels: dict[str, int] = {}  # label -> position, in bucket order
    for r in rows:
        q = "unassigned" if r["queue_id"] is None else str(r["queue_id"])
        t = per_queue.setdefault(q, {"queue": queue_name(r, loc), **{c: 0 for c in COUNTS}})
        for c in COUNTS:
            t[c] += r[c]
        labels.setdefault(_bucket_label(r, req.interval, loc), len(labels))
    volume = {k: [0] * len(labels) for k in ("offered", "answered", "abandoned")}
    service_level: dict[str, list[float | None]] = {t["queue"]: [None] * len(labels) for t in per_queue.values()}
    for r in rows:
        i = labels[_bucket_label(r, req.interval, loc)]
        for k in volume:
            volume[k][i] += r[k]
        v = r["service_level"]
        service_level[queue_name(r, loc)][i] = None if v is None else round(100 * v, 1)
    chart = {
        "labels": list(labels),
        "series": volume,
        "names": {k: loc.gettext(f"metric.{k}") for k in volume},
        "service_level": service_level,
    }
    grand = {c: sum(t[c] for t in per_queue.values()) for c in COUNTS} if per_queue else None
    return {"rows": rows, "totals": list(per_queue.values()), "grand": grand, "chart": chart, "intervals": INTERVALS}


#: The per-day counts drawn as bars (the campaigns page's first chart).
CAMPAIGN_VOLUME = ("attempts", "contacts_dialled", "connected_contacts")


def campaign_label(campaign_id: int, name: str | None) -> str:
    return f"{name} ({campaign_id})" if name else str(campaign_id)


def _day_label(day: date, loc: Locale) -> str:
    return day.strftime("%d/%m/%Y" if loc.lang == "vi" else "%Y-%m-%d")


def campaigns_page(known: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                   loc: Locale) -> dict[str, Any]:
    """The followed campaigns (analytics.campaigns), the choices of the filter, the
    per-day rows as the report reads them, and the charts' series.

    The bars add up counts of the campaigns shown; penetration is drawn per
    campaign, as the view computes it (a ratio is never summed)."""
    days = sorted({r["local_date"] for r in rows})
    index = {d: i for i, d in enumerate(days)}
    volume = {k: [0] * len(days) for k in CAMPAIGN_VOLUME}
    penetration: dict[str, list[float | None]] = {}
    for r in rows:
        i = index[r["local_date"]]
        for k in volume:
            volume[k][i] += r[k]
        line = penetration.setdefault(campaign_label(r["campaign_id"], r["campaign_name"]), [None] * len(days))
        line[i] = None if r["penetration"] is None else round(100 * r["penetration"], 1)
    chart = {
        "labels": [_day_label(d, loc) for d in days],
        "series": volume,
        "names": {k: loc.gettext(f"campaigns.{k}") for k in volume},
        "order": list(CAMPAIGN_VOLUME),  # the JSON's keys are sorted; the bars keep this order
        "penetration": penetration,
    }
    return {
        "followed": [c for c in known if c["followed"]],
        "choices": [(str(c["campaign_id"]), campaign_label(c["campaign_id"], c["name"])) for c in known],
        "rows": rows,
        "day_label": lambda d: _day_label(d, loc),
        "chart": chart,
    }


def check_report_params(params: Mapping[str, str | None]) -> None:
    """Refuse (BadParameter) what the report parser would pass on to the
    database as an error, as `/api/reports/queues` does."""
    api_check({k: v for k, v in params.items() if v is not None})


def parse_call_search(qp: Mapping[str, str], tenant: TenantSettings) -> CallSearch:
    """The calls page's filters (names as in the URL: from, to, phone, agent,
    queue, direction, outcome, recording, cursor), within the user's tenant."""
    start, end = when_param(qp, "from"), when_param(qp, "to")
    if start is not None and end is not None and (start.tzinfo is None) == (end.tzinfo is None) and start >= end:
        raise BadParameter("to", "must be after from")
    phones: tuple[str, ...] = ()
    phone = text_param(qp, "phone", 64)
    if phone is not None:
        canonical = canonical_phone(phone, tenant.country_code)
        if canonical is None:
            raise BadParameter("phone", f"{phone!r} is not a phone number")
        phones = tuple(dict.fromkeys([canonical, phone.strip()]))
    queue_text = text_param(qp, "queue", 32)
    queue: int | str | None = None
    if queue_text == "unassigned":
        queue = queue_text
    elif queue_text is not None:
        queue = int_param(qp, "queue", 0, -(2**63), 2**63 - 1)
    direction = text_param(qp, "direction", 16)
    if direction is not None and direction not in DIRECTIONS:
        raise BadParameter("direction", "must be inbound or outbound")
    outcome = text_param(qp, "outcome", 32)
    if outcome is not None and outcome not in OUTCOMES:
        raise BadParameter("outcome", f"must be one of {', '.join(OUTCOMES)}")
    recording = text_param(qp, "recording", 8)
    if recording not in (None, "yes", "no"):
        raise BadParameter("recording", "must be yes or no")
    cursor_text = text_param(qp, "cursor", 1024)
    try:
        after = Cursor.decode(cursor_text) if cursor_text is not None else None
    except BadCursor as exc:
        raise BadParameter("cursor", str(exc)) from None
    return CallSearch(start=start, end=end, phones=phones, queue=queue, tenant=tenant.tenant_id, after=after,
                      agent=text_param(qp, "agent"), status=outcome, direction=direction,
                      has_recording=None if recording is None else recording == "yes", limit=50)


def with_param(request: Request, name: str, value: str) -> str:
    params = {k: v for k, v in request.query_params.items() if k != name}
    params[name] = value
    return f"{urlsplit(str(request.url)).path}?{urlencode(params)}"


#: Fields never shown to a reader, and URL parts never shown at all (signed media URLs).
_SECRET_FIELDS = {"recording_url"}


def timeline(events: Sequence[Mapping[str, Any]], full: bool) -> list[dict[str, Any]]:
    """Each delivery with what it changed from the one before: field names for a
    reader, names and values for compliance and admin (recording URLs without query)."""
    out = []
    previous: Mapping[str, Any] = {}
    for e in events:
        payload = e["payload"] if isinstance(e["payload"], dict) else {}
        changed = []
        for k, v in payload.items():
            if previous.get(k) != v and v not in (None, ""):
                shown = None
                if full:
                    shown = str(v)
                    if k in _SECRET_FIELDS:
                        shown = shown.split("?", 1)[0]
                    shown = shown[:200]
                changed.append((str(k)[:64], shown))
        previous = {**previous, **payload}
        out.append({"source": e["source"], "received_at": e["received_at"], "deliveries": e["deliveries"],
                    "flags": e["flags"], "changed": changed})
    return out


def parse_rule_form(fields: Mapping[str, str]) -> tuple[QueueId | str, dict[str, Any]]:
    """The rules form: `queue` (tenant, a queue id or unassigned) and one value per rule field set."""
    raw_queue = fields.get("queue", "tenant").strip()
    queue: QueueId | str
    if raw_queue == "tenant":
        queue = "tenant"
    elif raw_queue == "unassigned":
        queue = None
    else:
        try:
            queue = int(raw_queue)
        except ValueError:
            raise ValueError(f"queue: {raw_queue[:40]!r} is not a queue id, 'tenant' or 'unassigned'") from None
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = fields.get(name, "").strip()
        if raw == "":
            continue
        kind = type(getattr(DEFAULT_RULE, name))
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                values[name] = raw.lower() == "true"
            else:
                values[name] = kind(raw.replace(",", "."))
        except ValueError:
            raise ValueError(f"{name}: {raw[:40]!r} is not {'true or false' if kind is bool else 'a number'}") from None
    if not values:
        raise ValueError("give at least one value")
    return queue, values


def parse_audit_filter(qp: Mapping[str, str], tenant: TenantSettings) -> AccessQuery:
    """Filters of the audit page; times without an offset are in the tenant's zone."""
    start, end = when_param(qp, "from"), when_param(qp, "to")
    start = start.replace(tzinfo=tenant.zone) if start is not None and start.tzinfo is None else start
    end = end.replace(tzinfo=tenant.zone) if end is not None and end.tzinfo is None else end
    user = text_param(qp, "user", 128)
    return AccessQuery(tenant.tenant_id, user_name=user.strip().lower() if user else None,
                       call_id=text_param(qp, "call"), start=start, end=end,
                       limit=int_param(qp, "limit", 200, 1, 1000))


def csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return safe_text(str(v))
