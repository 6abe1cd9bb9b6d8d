"""The tenants table mirrors the configured tenants (their zones drive report buckets; their
phone-number policy drives what the BI views show of campaign contacts)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.settings import TenantSettings

_UPSERT = text(
    """
    INSERT INTO callstore.tenants (tenant_id, timezone, bi_phone_numbers)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:zones AS text[]), CAST(:phones AS text[]))
    ON CONFLICT (tenant_id) DO UPDATE SET timezone = excluded.timezone,
        bi_phone_numbers = excluded.bi_phone_numbers, updated_at = now()
        WHERE (callstore.tenants.timezone, callstore.tenants.bi_phone_numbers)
              IS DISTINCT FROM (excluded.timezone, excluded.bi_phone_numbers)
    """
)


async def sync_tenants(conn: AsyncConnection, tenants: Sequence[TenantSettings]) -> None:
    await conn.execute(_UPSERT, {"ids": [t.tenant_id for t in tenants], "zones": [t.timezone for t in tenants],
                                 "phones": [t.bi_phone_numbers for t in tenants]})


# A call's queue is computed from the tenant's catalogue and manual mappings
# when the call is written (store/ingest.py), and again for the stored calls
# when either changes (sync/queues.py). Under READ COMMITTED each statement
# sees what was committed when it began, so without a lock a call written
# while a catalogue change is in flight is computed from the old catalogue
# and missed by the re-attribution, for good. The tenant's row is the lock:
# writers of calls hold a KEY SHARE lock on it until they commit (they never
# wait for each other); a catalogue or mapping change takes it FOR UPDATE
# before reading anything, so it waits for the writers in flight, and the
# writers that come after it wait for its commit, then see its result.
_SHARE = text(
    "SELECT tenant_id FROM callstore.tenants WHERE tenant_id = ANY(CAST(:ids AS text[]))"
    " ORDER BY tenant_id FOR KEY SHARE"
)
_EXCLUSIVE = text("SELECT tenant_id FROM callstore.tenants WHERE tenant_id = :t FOR UPDATE")


async def share_attribution(conn: AsyncConnection, tenant_ids: Sequence[str]) -> None:
    """Before writing calls of `tenant_ids`: no catalogue change may commit until we do."""
    await conn.execute(_SHARE, {"ids": sorted(set(tenant_ids))})


async def lock_attribution(conn: AsyncConnection, tenant_id: str) -> None:
    """Before changing a tenant's catalogue or mappings: wait for the calls being written."""
    await conn.execute(_EXCLUSIVE, {"t": tenant_id})
