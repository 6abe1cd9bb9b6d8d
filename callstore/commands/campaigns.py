"""`callstore campaigns add|remove|list` and `callstore sync-campaigns`."""

from __future__ import annotations

import argparse

from callstore.runtime import UsageError, database, one_tenant, run_async
from reports.campaigns import refresh_campaigns
from reports.exports import printable
from store.errors import ConfigError
from store.settings import Settings
from sync.campaigns import add_campaign, ambiguous_attempts, list_campaigns, remove_campaign, sync_all


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("sync-campaigns", help="read the followed campaigns' contact lists and contacts from Alohub")
    s.add_argument("--tenant", help="one tenant id (default: every tenant with ALOHUB_API_KEY)")
    s.add_argument("--campaign", type=_campaign_id, action="append", metavar="ID",
                   help="only this campaign (repeatable; it must be followed)")
    s.set_defaults(func=_sync)

    c = sub.add_parser("campaigns", help="the outbound campaigns to follow (Alohub cannot list them)")
    csub = c.add_subparsers(dest="campaigns_command", required=True)
    a = csub.add_parser("add", help="follow campaign ID")
    a.add_argument("campaign_id", type=_campaign_id, metavar="ID")
    a.add_argument("--name", help="a name to show in reports (Alohub's API does not give one)")
    a.add_argument("--tenant", help="tenant id (required when several are configured)")
    a.set_defaults(func=_add)
    r = csub.add_parser("remove", help="stop following campaign ID (what was synced is kept)")
    r.add_argument("campaign_id", type=_campaign_id, metavar="ID")
    r.add_argument("--tenant", help="tenant id (required when several are configured)")
    r.set_defaults(func=_remove)
    ls = csub.add_parser("list", help="the followed campaigns and their last sync")
    ls.add_argument("--tenant", help="tenant id (required when several are configured)")
    ls.set_defaults(func=_list)


def _campaign_id(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a campaign id (a positive whole number)")
    return int(value)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)

    async def go() -> None:
        async with database(settings) as engine, engine.begin() as conn:
            new = await add_campaign(conn, tenant.tenant_id, args.campaign_id, args.name)
        print(f"campaign {args.campaign_id} of tenant {tenant.tenant_id}: "
              + ("followed; the next sync reads its contacts" if new else "already followed"))

    run_async(go())
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)

    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            return await remove_campaign(conn, tenant.tenant_id, args.campaign_id)

    if not run_async(go()):
        raise UsageError(f"campaign {args.campaign_id} is not followed by tenant {tenant.tenant_id}")
    print(f"campaign {args.campaign_id} of tenant {tenant.tenant_id}: no longer synced; its history is kept")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            rows = await list_campaigns(conn, tenant.tenant_id)
        if not rows:
            print(f"tenant {tenant.tenant_id} follows no campaign; add one with `callstore campaigns add ID`")
            return
        zone = tenant.zone
        print(f"{'campaign':>10}  {'name':<24}  {'added by':<8}  {'last sync':<25}  state")
        for c in rows:
            synced = c.last_synced_at.astimezone(zone).isoformat(timespec="seconds") if c.last_synced_at else "never"
            state = "removed" if c.removed_at else (f"last sync failed: {c.last_error}" if c.last_error else "ok")
            # The name is typed by someone and the error may quote Alohub: no control characters.
            print(f"{c.campaign_id:>10}  {printable(c.name or ''):<24}  {c.added_by:<8}  {synced:<25}  "
                  f"{printable(state)}")

    run_async(go())
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    tenants = [one_tenant(settings, args.tenant)] if args.tenant else [t for t in settings.tenants if t.api_key]
    if not tenants or not all(t.api_key for t in tenants):
        raise ConfigError("sync-campaigns", "ALOHUB_API_KEY is not set; the campaign API needs it")

    async def go() -> int:
        async with database(settings) as engine:
            out = await sync_all(engine, settings, tenant_ids=[t.tenant_id for t in tenants],
                                 campaign_ids=args.campaign)
            # Attribute the calls of new and removed contacts now, so the summary is current.
            async with engine.begin() as conn:
                await refresh_campaigns(conn)
            async with engine.connect() as conn:
                for tenant_id, summary in out.items():
                    summary.ambiguous = await ambiguous_attempts(conn, tenant_id)
        failed = 0
        for tenant_id, summary in out.items():
            print(summary.sentence(tenant_id))
            for change in summary.synced:
                print("  " + change.sentence())
            for cid, reason in summary.failed.items():
                print(f"  campaign {cid}: not synced: {printable(reason)}")
            for cid, n in summary.ambiguous.items():
                print(f"  campaign {cid}: {n} calls could belong to more than one contact; "
                      "attributed by the documented rule")
            failed += len(summary.failed)
        for t in tenants:
            if t.tenant_id not in out:  # its error is logged above
                print(f"campaigns of tenant {t.tenant_id}: not synced (see the error above)")
                failed += 1
        return 1 if failed else 0

    return int(run_async(go()))
