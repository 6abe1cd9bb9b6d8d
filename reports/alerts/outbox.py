"""Notifications are written to the outbox in the transaction that changes the
alert state, then sent by the job. A crash between the two delays a message;
it never loses one (at-least-once: receivers dedupe on `webhook-id`).

Sending is done by the alerts job, which holds the job's lease, so one
replica sends. A message that keeps failing is retried with a growing pause,
then marked failed; each failed attempt is a row of alert_delivery_failures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reports.alerts.notifiers import DeliveryError, Notifier

log = logging.getLogger("callstore.alerts")

#: Attempts (each with its in-call retries) before a message is marked failed:
#: with the pauses below that is about 8 hours.
MAX_ATTEMPTS = 12
MAX_PAUSE_MINUTES = 60


async def enqueue(conn: AsyncConnection, tenant_id: str, alert_id: int, kind: str, message_id: str,
                  payload: dict[str, Any], notifiers: Sequence[str]) -> None:
    if not notifiers:
        return
    await conn.execute(
        text("""
            INSERT INTO callstore.alert_outbox (tenant_id, alert_id, kind, notifier, message_id, payload)
            SELECT :t, :a, :k, n, :m, CAST(:p AS jsonb) FROM unnest(CAST(:n AS text[])) AS n
        """),
        {"t": tenant_id, "a": alert_id, "k": kind, "m": message_id, "p": orjson.dumps(payload).decode(),
         "n": list(notifiers)},
    )


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0


_DUE = text("""
    SELECT o.tenant_id, o.id, o.notifier, o.message_id, CAST(o.payload AS text) AS payload, o.attempts
    FROM callstore.alert_outbox o
    WHERE o.sent_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= now()
      -- keep each alert's messages in order per notifier: a resolve never overtakes its fire
      AND NOT EXISTS (SELECT 1 FROM callstore.alert_outbox e
                      WHERE e.tenant_id = o.tenant_id AND e.alert_id = o.alert_id AND e.notifier = o.notifier
                        AND e.id < o.id
                        AND e.sent_at IS NULL AND e.failed_at IS NULL)
    ORDER BY o.id
    LIMIT :limit
""")


async def deliver(engine: AsyncEngine, notifiers: Mapping[str, Notifier], client: httpx.AsyncClient,
                  limit: int = 100) -> Delivered:
    """Send what is due; record every outcome. Each row is settled in its own transaction."""
    done = Delivered()
    async with engine.connect() as conn:
        due = (await conn.execute(_DUE, {"limit": limit})).all()
    for row in due:
        notifier = notifiers.get(row.notifier)
        try:
            if notifier is None:
                raise DeliveryError(f"{row.notifier}: notifier no longer configured")
            await notifier.send(client, row.message_id, orjson.loads(row.payload))
        except DeliveryError as exc:
            done.failed += 1
            final = notifier is None or row.attempts + 1 >= MAX_ATTEMPTS
            log.warning("alert message %s to %s failed (attempt %d%s): %s", row.message_id, row.notifier,
                        row.attempts + 1, ", giving up" if final else "", exc.reason)
            async with engine.begin() as conn:
                await _failed(conn, row.tenant_id, row.id, row.notifier, row.attempts + 1, exc, final)
            continue
        done.sent += 1
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE callstore.alert_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL "
                     "WHERE tenant_id = :t AND id = :id"), {"t": row.tenant_id, "id": row.id})
    return done


async def _failed(conn: AsyncConnection, tenant_id: str, outbox_id: int, notifier: str, attempt: int,
                  exc: DeliveryError, final: bool) -> None:
    await conn.execute(
        text("INSERT INTO callstore.alert_delivery_failures (tenant_id, outbox_id, notifier, attempt, http_status, "
             "error) VALUES (:t, :id, :n, :a, :s, :e)"),
        {"t": tenant_id, "id": outbox_id, "n": notifier, "a": attempt, "s": exc.http_status, "e": exc.reason},
    )
    await conn.execute(
        text("""
            UPDATE callstore.alert_outbox
            SET attempts = :a, last_error = :e,
                failed_at = CASE WHEN :final THEN now() END,
                next_attempt_at = now() + make_interval(mins => least(power(2, :a - 1)::int, :cap))
            WHERE tenant_id = :t AND id = :id
        """),
        {"t": tenant_id, "id": outbox_id, "a": attempt, "e": exc.reason, "final": final, "cap": MAX_PAUSE_MINUTES},
    )
