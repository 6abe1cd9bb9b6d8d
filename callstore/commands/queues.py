"""`callstore sync-queues` and `callstore queues map|unmap|list`."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from callstore.runtime import UsageError, database, one_tenant, run_async
from store.errors import ConfigError
from store.settings import Settings, TenantSettings
from sync.client import AlohubClient, new_http_client
from sync.queues import (
    canonical_hotline,
    fetch_queues,
    list_mappings,
    list_queues,
    queue_exists,
    remove_mapping,
    set_mapping,
    store_catalogue,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("sync-queues", help="read the inbound-queue catalogue from Alohub and re-attribute calls")
    s.add_argument("--tenant", help="one tenant id (default: every tenant with ALOHUB_API_KEY)")
    s.set_defaults(func=_sync)

    q = sub.add_parser("queues", help="the queue catalogue and manual hotline-to-queue mappings")
    qsub = q.add_subparsers(dest="queues_command", required=True)
    m = qsub.add_parser("map", help="attribute calls to HOTLINE to QUEUE (for numbers Alohub does not list)")
    m.add_argument("--hotline", required=True)
    m.add_argument("--queue", required=True, help="queue id (Alohub callinId)")
    m.add_argument("--note", help="why the mapping exists (default: keep the existing note)")
    m.add_argument("--tenant")
    m.set_defaults(func=_map)
    u = qsub.add_parser("unmap", help="remove the mapping of a hotline")
    u.add_argument("--hotline", required=True)
    u.add_argument("--tenant")
    u.set_defaults(func=_unmap)
    ls = qsub.add_parser("list", help="list queues and mappings")
    ls.add_argument("--tenant")
    ls.set_defaults(func=_list)


def _hotline(value: str, tenant: TenantSettings) -> str:
    number = canonical_hotline(value, tenant.country_code)
    if number is None:
        raise UsageError(f"--hotline: {value!r} is not a phone number")
    return number


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    tenants = [one_tenant(settings, args.tenant)] if args.tenant else [t for t in settings.tenants if t.api_key]
    if not tenants or not all(t.api_key for t in tenants):
        raise ConfigError("sync-queues", "ALOHUB_API_KEY is not set; the queue catalogue needs it")

    async def go() -> None:
        async with database(settings) as engine, new_http_client() as http:
            for t in tenants:
                records = await fetch_queues(AlohubClient(http, t))
                async with engine.begin() as conn:
                    c = await store_catalogue(conn, t, records, datetime.now(timezone.utc))
                print(f"tenant {t.tenant_id}: {c.summary()}")

    run_async(go())
    return 0


def _map(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)
    hotline = _hotline(args.hotline, tenant)
    try:
        queue_id = int(args.queue)
    except ValueError:
        raise UsageError(f"--queue: {args.queue!r} is not a queue id (a whole number, Alohub's callinId)") from None

    async def go() -> int:
        async with database(settings) as engine, engine.begin() as conn:
            if not await queue_exists(conn, tenant.tenant_id, queue_id):
                raise UsageError(f"--queue: no queue {queue_id} in the catalogue of tenant {tenant.tenant_id!r}; "
                                 "run `callstore sync-queues` or see `callstore queues list`")
            return await set_mapping(conn, tenant.tenant_id, hotline, queue_id, args.note)

    moved = run_async(go())
    print(f"mapped {hotline} to queue {queue_id}; {moved} calls re-attributed")
    return 0


def _unmap(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)
    hotline = _hotline(args.hotline, tenant)

    async def go() -> tuple[bool, int]:
        async with database(settings) as engine, engine.begin() as conn:
            return await remove_mapping(conn, tenant.tenant_id, hotline)

    found, moved = run_async(go())
    if not found:
        raise UsageError(f"--hotline: {hotline} has no mapping")
    print(f"unmapped {hotline}; {moved} calls re-attributed")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            queues = await list_queues(conn, tenant.tenant_id)
            mappings = await list_mappings(conn, tenant.tenant_id)
        print(f"{'queue':>10}  {'callin number':<16}  {'status':<8}  name")
        for qid, name, number, removed in queues:
            print(f"{qid:>10}  {number or '-':<16}  {'removed' if removed else 'listed':<8}  {name or ''}")
        print(f"\n{'hotline':<16}  {'queue':>10}  note")
        for m in mappings:
            shadow = f" (catalogue wins: queue {m.shadowed_by})" if m.shadowed_by is not None else ""
            print(f"{m.hotline:<16}  {m.queue_id:>10}  {m.note}{shadow}")

    run_async(go())
    return 0
