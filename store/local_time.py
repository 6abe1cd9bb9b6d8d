"""Instants as a person of the tenant reads them: in the tenant's zone, with its offset.

The database stores timestamptz and asyncpg hands them over in UTC; every
surface a person reads (the API, the command line, exports) shows them in
the tenant's zone instead, e.g. 2026-12-01T09:00:00+07:00. Logs stay in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from store.settings import TenantSettings


def in_zone(value: Any, zone: ZoneInfo) -> Any:
    """`value` with every aware datetime in it (nested dicts and lists too) moved to `zone`."""
    if isinstance(value, datetime):
        return value.astimezone(zone) if value.tzinfo is not None else value
    if isinstance(value, Mapping):
        return {k: in_zone(v, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [in_zone(v, zone) for v in value]
    return value


def local_iso(at: datetime | None, zone: ZoneInfo, *, empty: str = "-") -> str:
    """ISO 8601 to the second in `zone` with its offset; `empty` for None."""
    if at is None:
        return empty
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(zone).isoformat(timespec="seconds")


def tenant_zone(tenants: Sequence[TenantSettings], tenant_id: str | None) -> ZoneInfo:
    """The zone of `tenant_id`; with None, or a tenant no longer configured, the first tenant's."""
    for t in tenants:
        if t.tenant_id == tenant_id:
            return t.zone
    return tenants[0].zone if tenants else ZoneInfo("UTC")
