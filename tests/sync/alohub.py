"""Helpers for tests that run sync/ against the fake Alohub."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from store.phone import canonical_phone
from store.settings import Settings, TenantSettings
from sync.fake.history import recording_link
from tests.conftest import WEBHOOK_KEY, WEBHOOK_KEY_2

API_KEY = "sk_live_Secret-Key-42"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2024, 1, 13, tzinfo=ZONE)
UNTIL = datetime(2024, 1, 14, tzinfo=ZONE)


def tenant_for(base_url: str, **overrides: Any) -> TenantSettings:
    values: dict[str, Any] = dict(
        tenant_id="default", webhook_keys=(WEBHOOK_KEY, WEBHOOK_KEY_2), api_url=f"{base_url}/api",
        xapi_url=base_url, api_key=API_KEY, media_url=base_url, media_hosts=("127.0.0.1",),
    )
    values.update(overrides)
    return TenantSettings(**values)


def settings_for(base_url: str, **overrides: Any) -> Settings:
    return replace(Settings(tenants=(tenant_for(base_url),)), **overrides)


def scaled_clock(factor: float = 10.0):  # type: ignore[no-untyped-def]
    """A clock running `factor` times faster: the fake's 10 s windows last 10/factor real seconds."""
    return lambda: time.time() * factor


def expected_row(record: dict[str, Any], media_url: str) -> dict[str, Any]:
    """What analytics.calls must hold for a history record (after the merge's normalisation)."""

    def t(value: str) -> datetime | None:
        return datetime.fromisoformat(value).replace(tzinfo=ZONE) if value else None

    def phone(value: str) -> str | None:
        return (canonical_phone(value) or value) if value else None

    def n(value: str) -> int | None:
        return int(value) if value else None

    return {
        "call_id": record["call_id"],
        "direction": record["direction"].lower(),
        "call_status": record["call_status"] or None,
        "hotline": phone(record["hotline"]),
        "caller_number": phone(record["caller_number"]),
        "destination_number": phone(record["destination_number"]),
        "agent": record["agent"] or None,
        "transaction_id": record["transactionId"] or None,
        "started_at": t(record["starttime"]),
        "answered_at": t(record["answertime"]),
        "ended_at": t(record["endtime"]),
        "hangup_by": record["hangup_by"] or None,
        "total_seconds": n(record["total_duration"]),
        "hold_seconds": n(record["holding_duration"]),
        "recording_url": recording_link(media_url, record["recording_url"]) if record["recording_url"] else None,
    }


COMPARED = (
    "call_id", "direction", "call_status", "hotline", "caller_number", "destination_number", "agent",
    "transaction_id", "started_at", "answered_at", "ended_at", "hangup_by", "total_seconds", "hold_seconds",
)
