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
