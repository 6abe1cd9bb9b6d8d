"""Item 8: injected text.

Before: a caller number that is not a phone number (`<!channel>`, a link)
went unescaped into Slack messages, and in text log format a call id with a
line break forged a log line. Now every value from a webhook is escaped for
where it goes: Slack text, the alert webhook's JSON, a text log line.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.alerts.job import run_alerts
from reports.alerts.message import slack_body
from store.logs import JsonFormatter, Redact, TextFormatter
from store.tenants import sync_tenants
from tests.conftest import serving
from tests.conftest import test_settings as make_settings
from tests.reports.alerts.calls import insert_calls
from tests.reports.alerts.test_job import SALES, T0, Inbox, history

HOSTILE_CALLER = "<!channel> <https://evil.example/pay|click here>\n• +84 912 345 678: waited 0 s at 00:00"
HOSTILE_QUEUE = "Sales <!here> & www.evil.example"


def _payload(state: str = "firing") -> dict[str, Any]:
    return {"type": f"abandon_spike.{state}", "timestamp": "2026-11-20T10:00:00+07:00", "data": {
        "alert_id": 1, "tenant_id": "default", "queue_id": 7, "queue_name": HOSTILE_QUEUE,
        "queue": f"{HOSTILE_QUEUE} (7)", "state": state, "fired_at": "2026-11-20T09:58:00+07:00",
        "resolved_at": "2026-11-20T10:00:00+07:00",
        "window": {"start": "2026-11-20T09:45:00+07:00", "end": "2026-11-20T10:00:00+07:00", "minutes": 15},
        "figures": {"offered": 20, "answered": 5, "abandoned": 15, "short_abandoned": 0, "unanswered_other": 0,
                    "in_progress": 0, "handled": 20, "abandon_rate": 0.75, "rate_lower_bound": 0.5},
        "baseline": None, "rule": {"confidence": 0.95, "floor_rate": 0.1},
        "abandoned_callers_since": "2026-11-20T09:45:00+07:00", "abandoned_callers_count": 2,
        "abandoned_callers": [
            {"caller_number": HOSTILE_CALLER, "started_at": "2026-11-20T09:50:00+07:00", "wait_seconds": 40,
             "call_id": "x"},
            {"caller_number": "+84912345678", "started_at": "2026-11-20T09:51:00+07:00", "wait_seconds": 30,
             "call_id": "y"},
        ],
    }}


def test_slack_text_has_no_mention_link_or_forged_line() -> None:
    for state in ("firing", "resolved"):
        body = slack_body(_payload(state))
        text = body["text"]
        assert "<" not in text and ">" not in text  # no <!channel>, <!here>, <url|label>
        assert "&lt;!channel&gt;" in text and "&lt;!here&gt;" in text and "&amp;" in text
        assert "https://evil" not in text and "www.evil.example" not in text  # no bare link either
        assert body["unfurl_links"] is False and body["unfurl_media"] is False
        # One line per caller: the newline in the caller number forged none.
        bullets = [line for line in text.splitlines() if line.startswith("•")]
        assert len(bullets) == 2 and bullets[1] == "• +84912345678: waited 30 s at 09:51"


def test_the_alert_webhook_json_keeps_the_values_exactly() -> None:
    # JSON encoding is the escaping: the receiver decodes the same string, and nothing breaks out.
    payload = _payload()
    decoded = orjson.loads(orjson.dumps(payload))
    assert decoded["data"]["abandoned_callers"][0]["caller_number"] == HOSTILE_CALLER


def _log_line(formatter: logging.Formatter, message: str, *args: object, exc: bool = False) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(Redact())
    log = logging.getLogger("callstore.test.escaping")
    log.handlers[:] = [handler]
    log.propagate = False
    try:
        if exc:
            try:
                raise ValueError(*args)
            except ValueError:
                log.exception(message)
        else:
            log.warning(message, *args)
    finally:
        log.handlers[:] = []
    return out.getvalue()


FORGED = "abc\n2026-12-01 10:00:00,000 ERROR callstore: forged\r\x1b[2K\u2028"


def test_a_text_log_line_cannot_be_forged() -> None:
    line = _log_line(TextFormatter(), "call %s stored", FORGED)
    assert line.count("\n") == 1 and "\x1b" not in line and "\r" not in line and "\u2028" not in line
    assert "abc\\n2026-12-01 10:00:00,000 ERROR callstore: forged\\r\\x1b[2K\\u2028 stored" in line
    traceback = _log_line(TextFormatter(), "failed", FORGED, exc=True)
    first, *rest = traceback.rstrip("\n").split("\n")
    assert "failed" in first and rest and all(line.startswith("    ") for line in rest)


def test_a_json_log_line_is_one_object() -> None:
    line = _log_line(JsonFormatter(), "call %s stored", FORGED)
    assert line.count("\n") == 1 and orjson.loads(line)["message"] == f"call {FORGED} stored"


async def test_a_hostile_caller_number_reaches_slack_as_text(engine: AsyncEngine) -> None:
    """End to end: calls stored with a caller number and a queue name that are
    Slack markup, a real spike, the alerts job, a real HTTP server as Slack."""
    calls = [replace(c, caller=HOSTILE_CALLER) if c.call_id.startswith("spike-") else c for c in history()]
    inbox = Inbox()
    async with serving(inbox.app()) as url:
        settings = make_settings(alert_slack_url=f"{url}/slack")
        async with engine.begin() as conn:
            await sync_tenants(conn, settings.tenants)
            await conn.execute(text("INSERT INTO callstore.queues (tenant_id, queue_id, name) VALUES "
                                    "('default', :q, :n)"), {"q": SALES, "n": HOSTILE_QUEUE})
        await insert_calls(engine, calls)
        async with httpx.AsyncClient() as client:
            minute = 0
            while not inbox.slack and minute < 20:
                await run_alerts(engine, settings, now=T0 + timedelta(minutes=minute, seconds=7), client=client,
                                 retry_delays=(0,))
                minute += 1
    assert inbox.slack, "the spike did not fire"
    message = inbox.slack[0]["text"]
    assert "Abandoned calls spike" in message and "&lt;!channel&gt;" in message and "&lt;!here&gt;" in message
    assert "<" not in message and "https://evil" not in message and "www.evil.example" not in message
    assert all(line.startswith("•") for line in message.split("Call back", 1)[1].splitlines()[1:])
