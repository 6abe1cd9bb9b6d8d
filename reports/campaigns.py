"""Campaign attempts and the daily campaign rollup, maintained incrementally.

An outbound call is an attempt of a campaign contact when its customer number
(`caller_number`, canonical; Alohub puts the customer there in both
directions) is the contact's number and the call started before the contact
was removed. Alohub gives no creation time for a contact, so a contact owns
such calls from any time before its removal. Inbound calls are never attempts.

When several contacts could own a call (the number is in two campaigns, or
twice in one), the rule is deterministic and depends only on the contacts and
the call: the contact first seen most recently at or before the call's start
wins; if none was seen by then, the one first seen earliest; ties go to the
lower campaign id, then the lower contact id. Such a call counts as an
ambiguous attribution (`candidates` > 1).

Maintenance: a trigger on calls and the campaign sync append the numbers
whose attempts may have changed to `campaign_dirty`; `refresh_campaigns`
takes them, recomputes those numbers' attempts from `analytics.calls` (so the
outcome and talk time are the queue reports' definitions), and recomputes the
daily rollup rows (campaign, local day) that the old or new attempts touch.
Its work is proportional to the changed numbers, never a scan of all calls.
Refreshes are serialised by a row of `callstore.locks` (store/locks.py),
which only the service may lock, so no other role can stall them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.locks import hold
from store.settings import Settings


_TAKE_DIRTY = text(
    """
    WITH taken AS (DELETE FROM callstore.campaign_dirty RETURNING tenant_id, phone)
    SELECT DISTINCT tenant_id, phone FROM taken ORDER BY 1, 2
    """
)

_NUMBERS = "unnest(CAST(:tenant AS text[]), CAST(:phone AS text[])) AS k(tenant_id, phone)"

_DELETE_ATTEMPTS = text(
    f"""
    DELETE FROM callstore.campaign_attempts a USING {_NUMBERS}
    WHERE a.tenant_id = k.tenant_id AND a.phone = k.phone
    RETURNING a.tenant_id, a.campaign_id, a.local_date
    """
)

_INSERT_ATTEMPTS = text(
    f"""
    INSERT INTO callstore.campaign_attempts (tenant_id, call_id, phone, campaign_id, contact_id, started_at,
                                             local_date, answered, ended, talk_seconds, candidates)
    SELECT c.tenant_id, c.call_id, k.phone, pick.campaign_id, pick.contact_id, c.started_at,
           (c.started_at AT TIME ZONE t.timezone)::date, c.outcome = 'answered', c.ended_at IS NOT NULL,
           CASE WHEN c.outcome = 'answered' THEN c.talk_seconds END, pick.candidates
    FROM {_NUMBERS}
    JOIN callstore.tenants t ON t.tenant_id = k.tenant_id
    JOIN analytics.calls c ON c.tenant_id = k.tenant_id AND c.caller_number = k.phone
    CROSS JOIN LATERAL (
        SELECT x.campaign_id, x.contact_id, count(*) OVER () AS candidates
        FROM callstore.campaign_contacts x
        WHERE x.tenant_id = c.tenant_id AND x.phone_canonical = c.caller_number
          AND (x.removed_at IS NULL OR c.started_at < x.removed_at)
        ORDER BY (x.first_seen_at <= c.started_at) DESC,
                 CASE WHEN x.first_seen_at <= c.started_at THEN x.first_seen_at END DESC,
                 x.first_seen_at, x.campaign_id, x.contact_id
        LIMIT 1
    ) pick
    WHERE c.direction = 'outbound' AND c.started_at IS NOT NULL
    RETURNING tenant_id, campaign_id, local_date
    """
)

_DAYS = "unnest(CAST(:tenant AS text[]), CAST(:campaign AS bigint[]), CAST(:day AS date[])) AS k(tenant_id, campaign_id, local_date)"

_DELETE_DAYS = text(
    f"""
    DELETE FROM callstore.campaign_rollup_daily r USING {_DAYS}
    WHERE r.tenant_id = k.tenant_id AND r.campaign_id = k.campaign_id AND r.local_date = k.local_date
    """
)

_INSERT_DAYS = text(
    f"""
    INSERT INTO callstore.campaign_rollup_daily (tenant_id, campaign_id, local_date, attempts, contacts_dialled,
                                                 connected_contacts, talk_count, talk_sum)
    SELECT k.tenant_id, k.campaign_id, k.local_date, count(*), count(DISTINCT a.contact_id),
           count(DISTINCT a.contact_id) FILTER (WHERE a.answered), count(a.talk_seconds),
           coalesce(sum(a.talk_seconds), 0)
    FROM {_DAYS}
    JOIN callstore.campaign_attempts a
      ON a.tenant_id = k.tenant_id AND a.campaign_id = k.campaign_id AND a.local_date = k.local_date
    GROUP BY k.tenant_id, k.campaign_id, k.local_date
    """
)

_MARK_ALL = text(
    """
    INSERT INTO callstore.campaign_dirty (tenant_id, phone)
    SELECT DISTINCT tenant_id, phone_canonical FROM callstore.campaign_contacts WHERE phone_canonical IS NOT NULL
    UNION
    SELECT DISTINCT tenant_id, phone FROM callstore.campaign_attempts
    """
)


@dataclass(frozen=True)
class CampaignRefresh:
    numbers: int
    days: int
    seconds: float


async def refresh_campaigns(conn: AsyncConnection) -> CampaignRefresh:
    """Recompute the attempts of every number marked since the last refresh, and their days (caller commits)."""
    t0 = time.perf_counter()
    await hold(conn, "campaign_rollups")
    numbers = (await conn.execute(_TAKE_DIRTY)).all()
    days: set[tuple[str, int, object]] = set()
    if numbers:
        params = {"tenant": [n[0] for n in numbers], "phone": [n[1] for n in numbers]}
        days.update(tuple(r) for r in await conn.execute(_DELETE_ATTEMPTS, params))  # type: ignore[misc]
        days.update(tuple(r) for r in await conn.execute(_INSERT_ATTEMPTS, params))  # type: ignore[misc]
    if days:
        keys = sorted(days)  # type: ignore[type-var]
        params = {"tenant": [k[0] for k in keys], "campaign": [k[1] for k in keys], "day": [k[2] for k in keys]}
        await conn.execute(_DELETE_DAYS, params)
        await conn.execute(_INSERT_DAYS, params)
    return CampaignRefresh(len(numbers), len(days), time.perf_counter() - t0)


async def rebuild_campaigns(conn: AsyncConnection) -> CampaignRefresh:
    """Recompute every attempt and rollup row (after a tenant's time zone changed, or to check)."""
    await hold(conn, "campaign_rollups")
    await conn.execute(_MARK_ALL)
    await conn.execute(text("DELETE FROM callstore.campaign_rollup_daily"))
    return await refresh_campaigns(conn)


async def refresh_job(engine: AsyncEngine, settings: Settings) -> CampaignRefresh:
    """The scheduled job: one refresh in its own transaction."""
    async with engine.begin() as conn:
        return await refresh_campaigns(conn)
