"""What a notification says: one JSON payload (the generic webhook body, and
what the outbox stores), and its Slack rendering.

Phone numbers appear in full: the message is the callback list. They are
never logged.

Every value that came from a webhook or from Alohub (caller numbers, queue
names, call ids) is hostile: in Slack text it is escaped (`&`, `<`, `>`, so
`<!channel>` or `<https://x|click>` stay plain text), its control characters
and line breaks become spaces (no forged lines), and its `:`, `.` and `@` are
followed by a zero-width space so that Slack links no URL, domain or address
in it. The JSON payload needs nothing more: JSON encoding is its escaping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from reports.alerts.evaluate import Step
from reports.alerts.figures import CallRow
from reports.alerts.rules import QueueId

#: Callers listed in a message; the count says how many there were in all.
MAX_CALLERS = 200
#: Slack lines are for people: fewer.
MAX_SLACK_CALLERS = 40


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_LINKABLE = re.compile(r"([:.@])")


def slack_text(value: object) -> str:
    """An untrusted value as plain text inside a Slack mrkdwn message."""
    text = _CONTROL.sub(" ", str(value))[:200]
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LINKABLE.sub("\\1\u200b", text)


def queue_label(queue_id: QueueId, queue_name: str | None) -> str:
    if queue_id is None:
        return "unassigned"
    return f"{queue_name} ({queue_id})" if queue_name else f"queue {queue_id}"


def alert_payload(kind: str, tenant_id: str, zone: ZoneInfo, step: Step, queue_name: str | None,
                  alert_id: int | None, callers: Sequence[CallRow], callers_from: datetime) -> dict[str, Any]:
    """The message of an alert that fires ("firing") or resolves ("resolved")."""
    v, rule, at = step.verdict, step.rule, step.at
    f = v.figures

    def local(t: datetime | None) -> str | None:
        return t.astimezone(zone).isoformat() if t is not None else None

    return {
        "type": f"abandon_spike.{kind}",
        "timestamp": local(at),
        "data": {
            "alert_id": alert_id,
            "tenant_id": tenant_id,
            "queue_id": step.queue_id,
            "queue_name": queue_name,
            "queue": queue_label(step.queue_id, queue_name),
            "state": kind,
            "fired_at": local(step.state.fired_at),
            "resolved_at": local(step.state.resolved_at) if kind == "resolved" else None,
            "window": {"start": local(at - timedelta(minutes=rule.window_minutes)), "end": local(at),
                       "minutes": rule.window_minutes},
            "figures": {
                "offered": f.offered, "answered": f.answered, "abandoned": f.abandoned,
                "short_abandoned": f.short_abandoned, "unanswered_other": f.unanswered_other,
                "in_progress": f.in_progress, "handled": f.handled,
                "abandon_rate": _round(f.abandon_rate), "rate_lower_bound": _round(v.lower_bound),
            },
            "baseline": None if v.baseline is None else {
                "weeks": rule.baseline_weeks, "abandoned": v.baseline.abandoned, "handled": v.baseline.handled,
                "abandon_rate": _round(v.baseline.rate), "upper_bound": _round(v.baseline.upper_bound),
            },
            "rule": rule.as_dict(),
            "abandoned_callers_since": local(callers_from),
            "abandoned_callers_count": len(callers),
            "abandoned_callers": [
                {"caller_number": c.caller_number, "started_at": local(c.started_at), "wait_seconds": c.wait_seconds,
                 "call_id": c.call_id}
                for c in callers[:MAX_CALLERS]
            ],
        },
    }


def probe_payload(tenant_id: str, at: datetime) -> dict[str, Any]:
    return {"type": "abandon_spike.test", "timestamp": at.isoformat(),
            "data": {"tenant_id": tenant_id, "state": "test", "queue": "test",
                     "text": "callstore test message: alert notifications reach this endpoint"}}


def slack_body(payload: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body (mrkdwn text) for a payload of `alert_payload`."""
    d = payload["data"]
    if d.get("state") == "test":
        return {"text": f":white_check_mark: {d['text']} (tenant {slack_text(d['tenant_id'])})", **_NO_UNFURL}
    queue, tenant = slack_text(d["queue"]), slack_text(d["tenant_id"])
    f, w, b = d["figures"], d["window"], d["baseline"]
    rate = f"{_pct(f['abandon_rate'])} ({f['abandoned'] - f['short_abandoned']} of {f['handled']} calls)"
    usual = (f"usual for this hour {_pct(b['abandon_rate'])} (at most {_pct(b['upper_bound'])}, "
             f"{b['handled']} calls over {b['weeks']} weeks)") if b else "too little history for a baseline"
    span = f"{_hm(w['start'])}–{_hm(w['end'])}"
    if d["state"] == "firing":
        head = (f":rotating_light: *Abandoned calls spike* in queue *{queue}* (tenant {tenant})\n"
                f"Last {w['minutes']} min ({span}): abandon rate {rate}, at least {_pct(f['rate_lower_bound'])} "
                f"with {round(d['rule']['confidence'] * 100)} % confidence; {usual}; floor {_pct(d['rule']['floor_rate'])}.")
        title = "Call back"
    else:
        head = (f":white_check_mark: *Resolved*: abandoned calls back to normal in queue *{queue}* "
                f"(tenant {tenant})\nFired {_hm(d['fired_at'])}, resolved {_hm(d['resolved_at'])}. "
                f"Last {w['minutes']} min ({span}): abandon rate {rate}; {usual}.")
        title = "Abandoned during the alert"
    callers = d["abandoned_callers"]
    lines = [f"• {slack_text(c['caller_number']) if c['caller_number'] else 'unknown number'}: waited {c['wait_seconds']} s at {_hm(c['started_at'])}"
             for c in callers[:MAX_SLACK_CALLERS]]
    more = d["abandoned_callers_count"] - len(lines)
    if more > 0:
        lines.append(f"… and {more} more (see the webhook payload or analytics.calls)")
    body = f"{head}\n*{title}* ({d['abandoned_callers_count']}):\n" + "\n".join(lines) if lines else head
    return {"text": body, **_NO_UNFURL}


#: No previews of whatever a message might still link to.
_NO_UNFURL = {"unfurl_links": False, "unfurl_media": False}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f} %"


def _hm(iso: str | None) -> str:
    return "?" if iso is None else datetime.fromisoformat(iso).strftime("%H:%M")
