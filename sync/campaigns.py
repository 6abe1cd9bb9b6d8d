"""Outbound campaigns: each configured campaign's contact lists and contacts.

Alohub documents no route that lists campaigns, so the campaigns to follow are
configured (`callstore campaigns add`, or `campaign_ids` in the tenants file).
A sync reads `GET /v1/campaigns/{id}/contact-lists`, then every list's
`GET .../contact-lists/{listId}/contacts?page=&size=` from page 0 until
`totalRecord` contacts have arrived, through the one Alohub client (key, rate
limits, `Retry-After`, retry budget).

A campaign is stored whole or not at all: every page is fetched and checked
first, then written in one transaction. A record without a numeric
`contactId` or a phone number, or a page that comes back empty before
`totalRecord` is reached, fails that campaign's sync with a clear error (kept
in `callstore.campaigns.last_error`) and leaves its stored contacts as they
were, so no figure is computed from half a list. Other campaigns go on.

A contact that Alohub no longer lists is marked removed, not deleted. Every
change of `processStatus`, `callStatus` or presence is appended to
`campaign_contact_changes` at the time the sync first saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.merge import parse_int
from store.phone import canonical_phone
from store.settings import Settings, TenantSettings
from store.tenant_runs import TenantRuns, run_per_tenant
from sync.client import AlohubClient, new_http_client
from sync.errors import AlohubError, AlohubProtocolError
from sync.ratelimit import RateLimits

log = logging.getLogger("callstore.sync.campaigns")

ROUTE = "campaigns"
PAGE_SIZE = 100
MAX_PAGES = 100_000


@dataclass(frozen=True)
class ContactList:
    list_id: int
    name: str | None
    contact_count: int | None


@dataclass(frozen=True)
class Contact:
    contact_id: int
    list_id: int
    customer_id: int | None
    phone_number: str
    phone_canonical: str | None
    name: str | None
    process_status: int | None
    call_status: str | None


@dataclass(frozen=True)
class CampaignData:
    campaign_id: int
    lists: list[ContactList]
    contacts: list[Contact]


@dataclass(frozen=True)
class CampaignChange:
    campaign_id: int
    lists: int
    contacts: int
    added: int
    changed: int
    removed: int

    def sentence(self) -> str:
        return (f"campaign {self.campaign_id}: {self.contacts} contacts in {self.lists} lists "
                f"({self.added} new, {self.changed} changed, {self.removed} removed)")


def _id(record: dict[str, Any], key: str, where: str) -> int:
    value = record.get(key)
    number = parse_int(value) if not isinstance(value, bool) else None
    if number is None:
        raise AlohubProtocolError(f"{where}: {key} {value!r} is missing or not a number", route=ROUTE)
    return number


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def parse_list(record: dict[str, Any], campaign_id: int) -> ContactList:
    where = f"campaign {campaign_id}: contact list"
    return ContactList(_id(record, "listId", where), _text(record.get("listName")),
                       parse_int(record.get("contactCount")))


def parse_contact(record: dict[str, Any], campaign_id: int, list_id: int, tenant: TenantSettings) -> Contact:
    where = f"campaign {campaign_id} list {list_id}: contact"
    contact_id = _id(record, "contactId", where)
    phone = _text(record.get("phoneNumber"))
    if phone is None:
        raise AlohubProtocolError(f"{where} {contact_id}: phoneNumber is missing", route=ROUTE)
    status = record.get("processStatus")
    process = parse_int(status) if status is not None and not isinstance(status, bool) else None
    if status is not None and process not in (0, 1, 2):
        raise AlohubProtocolError(f"{where} {contact_id}: processStatus {status!r} is not 0, 1 or 2", route=ROUTE)
    return Contact(
        contact_id=contact_id,
        list_id=list_id,
        customer_id=parse_int(record.get("customerId")),
        phone_number=phone,
        phone_canonical=canonical_phone(phone, tenant.country_code),
        name=_text(record.get("name")) if tenant.store_contact_names else None,
        process_status=process,
        call_status=_text(record.get("callStatus")),
    )


async def fetch_campaign(client: AlohubClient, campaign_id: int, *, size: int = PAGE_SIZE) -> CampaignData:
    """Every list and contact of one campaign, checked; raises AlohubError on anything inconsistent."""
    base = f"/v1/campaigns/{campaign_id}/contact-lists"
    env = await client.gateway("GET", ROUTE, base)
    lists = [parse_list(r, campaign_id) for r in env.data]
    if env.total is not None and env.total > len(lists):
        raise AlohubProtocolError(f"campaign {campaign_id}: {len(lists)} contact lists of a totalRecord of "
                                  f"{env.total}", route=ROUTE)
    contacts: dict[int, Contact] = {}
    for lst in lists:
        received = 0
        page = 0
        while True:
            env = await client.gateway("GET", ROUTE, f"{base}/{lst.list_id}/contacts",
                                       params={"page": page, "size": size})
            for record in env.data:
                c = parse_contact(record, campaign_id, lst.list_id, client.tenant)
                contacts[c.contact_id] = c  # a contact that moved pages while paging is counted once
            received += len(env.data)
            if env.total is None:
                if len(env.data) < size:
                    break
            elif received >= env.total:
                break
            elif not env.data:
                raise AlohubProtocolError(
                    f"campaign {campaign_id} list {lst.list_id}: page {page} is empty after {received} of "
                    f"{env.total} contacts (totalRecord)", route=ROUTE)
            page += 1
            if page >= MAX_PAGES:
                raise AlohubProtocolError(f"campaign {campaign_id} list {lst.list_id}: more than {MAX_PAGES} pages",
                                          route=ROUTE)
    return CampaignData(campaign_id, lists, list(contacts.values()))


_LISTS = text(
    """
    WITH incoming AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(list_id bigint, name text, contact_count int)
    ), upserted AS (
        INSERT INTO callstore.campaign_lists AS l
            (tenant_id, campaign_id, list_id, name, contact_count, first_seen_at, last_seen_at)
        SELECT :t, :c, list_id, name, contact_count, :now, :now FROM incoming
        ON CONFLICT (tenant_id, campaign_id, list_id) DO UPDATE SET
            name = excluded.name, contact_count = excluded.contact_count, last_seen_at = excluded.last_seen_at,
            removed_at = NULL
        RETURNING list_id
    )
    UPDATE callstore.campaign_lists SET removed_at = :now
    WHERE tenant_id = :t AND campaign_id = :c AND removed_at IS NULL
      AND list_id NOT IN (SELECT list_id FROM upserted)
    """
)

# One statement: what changed is computed against the stored rows before they
# are written, appended to the history, then the contacts are upserted and the
# unlisted ones marked removed.
_CONTACTS = text(
    """
    WITH incoming AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(
            contact_id bigint, list_id bigint, customer_id bigint, phone_number text, phone_canonical text,
            name text, process_status smallint, call_status text)
    ), stored AS (
        SELECT * FROM callstore.campaign_contacts WHERE tenant_id = :t AND campaign_id = :c
    ), changes AS (
        SELECT i.contact_id, i.process_status, i.call_status, false AS removed,
               (s.contact_id IS NULL) AS added
        FROM incoming i LEFT JOIN stored s USING (contact_id)
        WHERE s.contact_id IS NULL OR s.removed_at IS NOT NULL
           OR s.process_status IS DISTINCT FROM i.process_status OR s.call_status IS DISTINCT FROM i.call_status
        UNION ALL
        SELECT s.contact_id, s.process_status, s.call_status, true, false
        FROM stored s WHERE s.removed_at IS NULL AND s.contact_id NOT IN (SELECT contact_id FROM incoming)
    ), dirty AS (
        -- numbers whose attribution may change: new, re-listed, renumbered or removed contacts
        INSERT INTO callstore.campaign_dirty (tenant_id, phone)
        SELECT DISTINCT :t, p FROM (
            SELECT i.phone_canonical AS p FROM incoming i LEFT JOIN stored s USING (contact_id)
            WHERE s.contact_id IS NULL OR s.removed_at IS NOT NULL
               OR s.phone_canonical IS DISTINCT FROM i.phone_canonical
            UNION ALL
            SELECT s.phone_canonical FROM stored s LEFT JOIN incoming i USING (contact_id)
            WHERE (i.contact_id IS NULL AND s.removed_at IS NULL)
               OR (i.contact_id IS NOT NULL AND s.phone_canonical IS DISTINCT FROM i.phone_canonical)
        ) x WHERE p IS NOT NULL
    ), history AS (
        INSERT INTO callstore.campaign_contact_changes
            (tenant_id, campaign_id, contact_id, seen_at, process_status, call_status, removed)
        SELECT :t, :c, contact_id, :now, process_status, call_status, removed FROM changes
        ON CONFLICT DO NOTHING
    ), upserted AS (
        INSERT INTO callstore.campaign_contacts AS k
            (tenant_id, campaign_id, contact_id, list_id, customer_id, phone_number, phone_canonical, name,
             process_status, call_status, first_seen_at, last_seen_at)
        SELECT :t, :c, contact_id, list_id, customer_id, phone_number, phone_canonical, name, process_status,
               call_status, :now, :now
        FROM incoming
        ON CONFLICT (tenant_id, campaign_id, contact_id) DO UPDATE SET
            list_id = excluded.list_id, customer_id = excluded.customer_id, phone_number = excluded.phone_number,
            phone_canonical = excluded.phone_canonical, name = excluded.name,
            process_status = excluded.process_status, call_status = excluded.call_status,
            last_seen_at = excluded.last_seen_at, removed_at = NULL
    ), removed AS (
        UPDATE callstore.campaign_contacts SET removed_at = :now
        WHERE tenant_id = :t AND campaign_id = :c AND removed_at IS NULL
          AND contact_id NOT IN (SELECT contact_id FROM incoming)
    )
    SELECT count(*) FILTER (WHERE added) AS added,
           count(*) FILTER (WHERE NOT added AND NOT removed) AS changed,
           count(*) FILTER (WHERE removed) AS removed
    FROM changes
    """
)


async def store_campaign(conn: AsyncConnection, tenant: TenantSettings, data: CampaignData,
                         now: datetime) -> CampaignChange:
    """Make the stored lists and contacts of one campaign what `data` lists (in the caller's transaction)."""
    t, c = tenant.tenant_id, data.campaign_id
    lists = [{"list_id": x.list_id, "name": x.name, "contact_count": x.contact_count} for x in data.lists]
    await conn.execute(_LISTS, {"t": t, "c": c, "now": now, "rows": orjson.dumps(lists).decode()})
    contacts = [
        {"contact_id": k.contact_id, "list_id": k.list_id, "customer_id": k.customer_id,
         "phone_number": k.phone_number, "phone_canonical": k.phone_canonical, "name": k.name,
         "process_status": k.process_status, "call_status": k.call_status}
        for k in data.contacts
    ]
    row = (await conn.execute(_CONTACTS, {"t": t, "c": c, "now": now,
                                          "rows": orjson.dumps(contacts).decode()})).one()
    await conn.execute(
        text("UPDATE callstore.campaigns SET last_synced_at = :now, first_synced_at = coalesce(first_synced_at, :now),"
             " last_error = NULL, last_error_at = NULL WHERE tenant_id = :t AND campaign_id = :c"),
        {"t": t, "c": c, "now": now},
    )
    return CampaignChange(c, len(data.lists), len(data.contacts), int(row.added), int(row.changed), int(row.removed))


# -- which campaigns ------------------------------------------------------------

@dataclass(frozen=True)
class Campaign:
    campaign_id: int
    name: str | None
    added_by: str
    added_at: datetime
    first_synced_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None
    removed_at: datetime | None


async def add_campaign(conn: AsyncConnection, tenant_id: str, campaign_id: int, name: str | None,
                       added_by: str = "cli") -> bool:
    """Follow a campaign (again); returns whether it was new. A name given replaces the stored one."""
    row = await conn.execute(
        text(
            """
            INSERT INTO callstore.campaigns (tenant_id, campaign_id, name, added_by) VALUES (:t, :c, :n, :by)
            ON CONFLICT (tenant_id, campaign_id) DO UPDATE SET
                name = coalesce(excluded.name, callstore.campaigns.name), removed_at = NULL
            RETURNING (xmax = 0) AS inserted
            """
        ),
        {"t": tenant_id, "c": campaign_id, "n": name, "by": added_by},
    )
    return bool(row.scalar_one())


async def remove_campaign(conn: AsyncConnection, tenant_id: str, campaign_id: int) -> bool:
    """Stop syncing a campaign; what was synced stays. Returns whether it was followed."""
    result = await conn.execute(
        text("UPDATE callstore.campaigns SET removed_at = now() WHERE tenant_id = :t AND campaign_id = :c"
             " AND removed_at IS NULL"),
        {"t": tenant_id, "c": campaign_id},
    )
    return bool(result.rowcount)


async def list_campaigns(conn: AsyncConnection, tenant_id: str, *, include_removed: bool = True) -> list[Campaign]:
    sql = ("SELECT campaign_id, name, added_by, added_at, first_synced_at, last_synced_at, last_error, removed_at"
           " FROM callstore.campaigns WHERE tenant_id = :t")
    if not include_removed:
        sql += " AND removed_at IS NULL"
    rows = await conn.execute(text(sql + " ORDER BY campaign_id"), {"t": tenant_id})
    return [Campaign(*r) for r in rows]


async def add_configured(conn: AsyncConnection, tenant: TenantSettings) -> None:
    """The tenants file's `campaign_ids` are followed without a command (a removed one stays removed)."""
    for cid in tenant.campaign_ids:
        await conn.execute(
            text("INSERT INTO callstore.campaigns (tenant_id, campaign_id, added_by) VALUES (:t, :c, 'config')"
                 " ON CONFLICT DO NOTHING"),
            {"t": tenant.tenant_id, "c": cid},
        )


async def _record_error(engine: AsyncEngine, tenant_id: str, campaign_id: int, message: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE callstore.campaigns SET last_error = :e, last_error_at = now()"
                 " WHERE tenant_id = :t AND campaign_id = :c"),
            {"t": tenant_id, "c": campaign_id, "e": message[:500]},
        )


async def ambiguous_attempts(conn: AsyncConnection, tenant_id: str) -> dict[int, int]:
    """Attempts per campaign that more than one contact could own (as of the last attribution refresh)."""
    rows = await conn.execute(
        text("SELECT campaign_id, count(*) FROM callstore.campaign_attempts WHERE tenant_id = :t AND candidates > 1"
             " GROUP BY campaign_id ORDER BY campaign_id"),
        {"t": tenant_id},
    )
    return {int(r[0]): int(r[1]) for r in rows}



@dataclass
class SyncSummary:
    synced: list[CampaignChange]
    failed: dict[int, str]
    #: calls per campaign that more than one contact could own
    ambiguous: dict[int, int] = field(default_factory=dict)

    def sentence(self, tenant_id: str) -> str:
        contacts = sum(c.contacts for c in self.synced)
        text_ = (f"campaigns of tenant {tenant_id}: {len(self.synced)} synced ({contacts} contacts, "
                 f"{sum(c.added for c in self.synced)} new, {sum(c.changed for c in self.synced)} changed, "
                 f"{sum(c.removed for c in self.synced)} removed)")
        if self.failed:
            text_ += f", {len(self.failed)} failed"
        if self.ambiguous:
            text_ += (f"; {sum(self.ambiguous.values())} calls could belong to more than one contact "
                      "(attributed by the documented rule)")
        return text_ + "."


async def sync_tenant_campaigns(engine: AsyncEngine, client: AlohubClient, *,
                                campaign_ids: Sequence[int] | None = None,
                                now: datetime | None = None) -> SyncSummary:
    """Sync every followed campaign of the client's tenant (or `campaign_ids` among them)."""
    tenant = client.tenant
    async with engine.begin() as conn:
        await add_configured(conn, tenant)
        followed = [c.campaign_id for c in await list_campaigns(conn, tenant.tenant_id, include_removed=False)]
    wanted = followed if campaign_ids is None else [c for c in followed if c in set(campaign_ids)]
    summary = SyncSummary([], {})
    for cid in wanted:
        try:
            data = await fetch_campaign(client, cid)
        except AlohubError as exc:
            message = str(exc)
            log.error("sync-campaigns: tenant %s campaign %d not synced, its stored contacts are kept as they "
                      "were: %s", tenant.tenant_id, cid, message)
            await _record_error(engine, tenant.tenant_id, cid, message)
            summary.failed[cid] = message
            continue
        async with engine.begin() as conn:
            change = await store_campaign(conn, tenant, data, now or datetime.now(timezone.utc))
        log.info("sync-campaigns: tenant %s %s.", tenant.tenant_id, change.sentence())
        summary.synced.append(change)
    async with engine.connect() as conn:
        summary.ambiguous = await ambiguous_attempts(conn, tenant.tenant_id)
    return summary


async def sync_all(engine: AsyncEngine, settings: Settings, limits: RateLimits | None = None, *,
                   tenant_ids: Sequence[str] | None = None,
                   campaign_ids: Sequence[int] | None = None,
                   runs: TenantRuns | None = None) -> dict[str, SyncSummary]:
    """The scheduled job and `callstore sync-campaigns`: every tenant with an API key.

    Each tenant is its own task (store/tenant_runs.py): at most
    CALLSTORE_TENANT_CONCURRENCY at once, each within CALLSTORE_TENANT_RUN_BUDGET.
    A tenant that fails or is cut is logged and left out of the result; the
    others are synced.
    """
    limits = limits or RateLimits()
    tenants = {t.tenant_id: t for t in settings.tenants
               if t.api_key and (tenant_ids is None or t.tenant_id in tenant_ids)}
    async with new_http_client() as http:

        async def one(tenant_id: str) -> SyncSummary:
            return await sync_tenant_campaigns(engine, AlohubClient(http, tenants[tenant_id], limits=limits),
                                               campaign_ids=campaign_ids)

        results = await run_per_tenant("sync-campaigns", list(tenants), one,
                                       concurrency=settings.tenant_concurrency,
                                       budget_s=settings.tenant_run_budget_s, runs=runs,
                                       describe=lambda tenant_id, summary: summary.sentence(tenant_id))
    return {r.tenant_id: r.result for r in results if r.result is not None}
