"""Alerts as people read them: firing now, recent history, and each alert's
callback list (the console's alerts page; analytics.alerts for BI)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.alerts.figures import CallRow, abandoned_callers


async def recent_alerts(conn: AsyncConnection, tenant_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The tenant's alerts, firing ones first, then newest first."""
    rows = await conn.execute(
        text("""
            SELECT alert_id, queue_id, queue_name, state, fired_at, resolved_at, window_minutes, offered, abandoned,
                   short_abandoned, abandon_rate, baseline_rate, peak_abandon_rate, fire_notification,
                   resolve_notification
            FROM analytics.alerts WHERE tenant_id = :t
            ORDER BY state = 'firing' DESC, fired_at DESC, alert_id DESC LIMIT :n
        """),
        {"t": tenant_id, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


async def callback_list(conn: AsyncConnection, tenant_id: str, alert: dict[str, Any],
                        now: datetime) -> list[CallRow]:
    """Everyone who gave up in the alert's queue from its window before firing until
    it resolved (or now): the same list as the resolve notification carries."""
    since = alert["fired_at"] - timedelta(minutes=alert["window_minutes"])
    until = alert["resolved_at"] or now
    return await abandoned_callers(conn, tenant_id, alert["queue_id"], since, until, until)
