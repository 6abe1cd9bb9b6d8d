"""The tenants table mirrors the configured tenants (their zones drive report buckets)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from store.settings import TenantSettings

_UPSERT = text(
    """
    INSERT INTO callstore.tenants (tenant_id, timezone)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:zones AS text[]))
    ON CONFLICT (tenant_id) DO UPDATE SET timezone = excluded.timezone, updated_at = now()
        WHERE callstore.tenants.timezone IS DISTINCT FROM excluded.timezone
    """
)


async def sync_tenants(conn: AsyncConnection, tenants: Sequence[TenantSettings]) -> None:
    await conn.execute(_UPSERT, {"ids": [t.tenant_id for t in tenants], "zones": [t.timezone for t in tenants]})
