"""`callstore alerts test|list|rules|backtest`: abandoned-call spike alerts."""

from __future__ import annotations

import argparse
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from callstore.runtime import UsageError, database, one_tenant, parse_when, run_async
from reports.alerts.backtest import backtest
from reports.alerts.evaluate import Step
from reports.alerts.message import probe_payload, queue_label
from reports.alerts.notifiers import DeliveryError, build_notifiers
from reports.alerts.rules import DEFAULT_RULE, FIELDS, QueueId, clear_rule, load_rules, set_rule
from store.errors import ConfigError
from store.local_time import in_zone, tenant_zone
from store.settings import Settings, TenantSettings

_MAX_SPAN = timedelta(days=400)
_HELP = {
    "enabled": "true or false", "window_minutes": "minutes of calls judged (15)",
    "min_offered": "offered calls needed to fire (10)", "min_abandoned": "abandoned calls, short excluded (5)",
    "floor_rate": "absolute abandon rate to exceed (0.2)", "clear_rate": "rate below which it resolves (0.1)",
    "confidence": "of the Wilson bounds (0.95)", "baseline_weeks": "weeks of same-hour history (4)",
    "min_baseline_calls": "history calls needed to use the baseline (40)",
    "pending_evaluations": "evaluations before firing (2)", "clear_evaluations": "evaluations before resolving (2)",
    "cooldown_minutes": "minutes after a resolve before it can fire again (30)",
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="abandoned-call spike alerts")
    asub = p.add_subparsers(dest="alerts_command", required=True)

    t = asub.add_parser("test", help="send a test message to each configured notifier")
    t.set_defaults(func=_test)

    ls = asub.add_parser("list", help="current state per queue and recent alerts")
    ls.add_argument("--tenant", help="one tenant (default: all)")
    ls.add_argument("--limit", type=int, default=20, help="recent alerts shown (20)")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=_list)

    r = asub.add_parser("rules", help="show or change the rules")
    rsub = r.add_subparsers(dest="rules_command", required=True)
    show = rsub.add_parser("show", help="the rule of the tenant and of each overridden queue")
    show.add_argument("--tenant")
    show.set_defaults(func=_rules_show)
    st = rsub.add_parser("set", help="set values on the tenant's rule, or on one queue's override (--queue)")
    st.add_argument("--tenant")
    st.add_argument("--queue", help="queue id, or 'unassigned' (default: the tenant's rule)")
    _rule_options(st)
    st.set_defaults(func=_rules_set)
    cl = rsub.add_parser("clear", help="remove a queue's override")
    cl.add_argument("--tenant")
    cl.add_argument("--queue", required=True, help="queue id, or 'unassigned'")
    cl.set_defaults(func=_rules_clear)

    b = asub.add_parser("backtest", help="replay the rules over stored history, without notifying")
    b.add_argument("--from", dest="start", required=True, help="ISO 8601; without offset in the tenant's zone")
    b.add_argument("--to", dest="end", required=True, help="ISO 8601, exclusive")
    b.add_argument("--tenant", help="one tenant (default: all)")
    b.add_argument("--format", choices=("text", "json"), default="text")
    _rule_options(b, note=" (for this replay only)")
    b.set_defaults(func=_backtest)


def _rule_options(p: argparse.ArgumentParser, note: str = "") -> None:
    for name in FIELDS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"rule_{name}", metavar="VALUE", help=_HELP[name] + note)


def _rule_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = getattr(args, f"rule_{name}")
        if raw is None:
            continue
        kind = type(getattr(DEFAULT_RULE, name))
        flag = f"--{name.replace('_', '-')}"
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                values[name] = raw.lower() == "true"
            else:
                values[name] = kind(raw)
        except ValueError:
            raise UsageError(f"{flag}: {raw!r} is not {'true or false' if kind is bool else 'a ' + kind.__name__}") from None
    return values


def _tenants(settings: Settings, name: str | None) -> list[TenantSettings]:
    if name is None:
        return list(settings.tenants)
    try:
        return [settings.tenant(name)]
    except KeyError:
        known = ", ".join(t.tenant_id for t in settings.tenants)
        raise UsageError(f"--tenant: unknown tenant {name!r} (configured: {known})") from None


def _queue(value: str) -> QueueId:
    if value == "unassigned":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--queue: {value!r} is not a queue id or 'unassigned'") from None


def _test(args: argparse.Namespace, settings: Settings) -> int:
    notifiers = build_notifiers(settings)
    if not notifiers:
        raise ConfigError("CALLSTORE_ALERT_WEBHOOK_URL",
                          "no notifier configured: set it (and CALLSTORE_ALERT_WEBHOOK_SECRET) or CALLSTORE_ALERT_SLACK_URL")

    async def go() -> int:
        failed = 0
        payload = probe_payload(settings.tenants[0].tenant_id, datetime.now(timezone.utc))
        async with httpx.AsyncClient(follow_redirects=False) as client:
            for name, notifier in sorted(notifiers.items()):
                try:
                    await notifier.send(client, f"test_{uuid.uuid4().hex}", payload)
                    print(f"{name}: sent")
                except DeliveryError as exc:
                    failed += 1
                    print(f"{name}: failed: {exc.reason}")
        return 1 if failed else 0

    return run_async(go())


def _list(args: argparse.Namespace, settings: Settings) -> int:
    tenants = [t.tenant_id for t in _tenants(settings, args.tenant)]
    if args.limit < 0:
        raise UsageError("--limit: must not be negative")

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with database(settings) as engine, engine.connect() as conn:
            states = await conn.execute(text("""
                SELECT tenant_id, queue_id, state, since, evaluated_at, offered, abandoned - short_abandoned AS abandoned,
                       handled, abandon_rate, baseline_rate
                FROM callstore.alert_states WHERE tenant_id = ANY(CAST(:t AS text[]))
                ORDER BY tenant_id, queue_id NULLS FIRST"""), {"t": tenants})
            alerts = await conn.execute(text("""
                SELECT alert_id, tenant_id, queue_id, queue_name, state, fired_at, resolved_at, abandon_rate,
                       baseline_rate, peak_abandon_rate, fire_notification, resolve_notification
                FROM analytics.alerts WHERE tenant_id = ANY(CAST(:t AS text[]))
                ORDER BY fired_at DESC, alert_id DESC LIMIT :n"""), {"t": tenants, "n": args.limit})
            return [dict(r._mapping) for r in states], [dict(r._mapping) for r in alerts]

    states, alerts = run_async(go())
    # Instants in each tenant's zone, with its offset.
    states = [in_zone(s, tenant_zone(settings.tenants, s["tenant_id"])) for s in states]
    alerts = [in_zone(a, tenant_zone(settings.tenants, a["tenant_id"])) for a in alerts]
    if args.format == "json":
        print(orjson.dumps({"states": states, "alerts": alerts}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'tenant':<12} {'queue':<12} {'state':<10} {'since':<26} {'rate':>6} {'abandoned/handled':>18} {'baseline':>9}")
    for s in states:
        since = s["since"].isoformat(timespec="seconds") if s["since"] else "-"
        print(f"{s['tenant_id']:<12} {_q(s['queue_id']):<12} {s['state']:<10} {since:<26} {_pct(s['abandon_rate']):>6} "
              f"{str(s['abandoned']) + '/' + str(s['handled']):>18} {_pct(s['baseline_rate']):>9}")
    print(f"\nrecent alerts ({len(alerts)}):")
    for a in alerts:
        resolved = a["resolved_at"].isoformat(timespec="seconds") if a["resolved_at"] else "-"
        print(f"#{a['alert_id']:<5} {a['tenant_id']:<12} {queue_label(a['queue_id'], a['queue_name']):<20} "
              f"{a['state']:<9} fired {a['fired_at'].isoformat(timespec='seconds')} resolved {resolved} rate {_pct(a['abandon_rate'])} "
              f"peak {_pct(a['peak_abandon_rate'])} notified {a['fire_notification']}/{a['resolve_notification'] or '-'}")
    return 0


def _rules_show(args: argparse.Namespace, settings: Settings) -> int:
    tenants = _tenants(settings, args.tenant)

    async def go() -> None:
        async with database(settings) as engine, engine.connect() as conn:
            for t in tenants:
                book = await load_rules(conn, t.tenant_id)
                print(f"tenant {t.tenant_id}: " + " ".join(f"{k}={v}" for k, v in book.tenant.as_dict().items()))
                for q, values in sorted(book.queues.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
                    print(f"  queue {_q(q)}: " + " ".join(f"{k}={v}" for k, v in values.items()))

    run_async(go())
    return 0


def _rules_set(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)
    queue: QueueId | str = "tenant" if args.queue is None else _queue(args.queue)
    values = _rule_values(args)
    if not values:
        raise UsageError("rules set: give at least one setting, e.g. --min-offered 10")

    async def go() -> str:
        async with database(settings) as engine, engine.begin() as conn:
            try:
                rule = await set_rule(conn, tenant.tenant_id, queue, values)
            except ValueError as exc:
                name, _, problem = str(exc).partition(": ")
                raise UsageError(f"--{name.replace('_', '-')}: {problem}") from None
            return " ".join(f"{k}={v}" for k, v in rule.as_dict().items())

    where = "tenant rule" if queue == "tenant" else f"queue {_q(queue)}"  # type: ignore[arg-type]
    print(f"{tenant.tenant_id} {where}: {run_async(go())}")
    return 0


def _rules_clear(args: argparse.Namespace, settings: Settings) -> int:
    tenant = one_tenant(settings, args.tenant)
    queue = _queue(args.queue)

    async def go() -> bool:
        async with database(settings) as engine, engine.begin() as conn:
            return await clear_rule(conn, tenant.tenant_id, queue)

    if not run_async(go()):
        raise UsageError(f"--queue: queue {_q(queue)} has no override")
    print(f"{tenant.tenant_id} queue {_q(queue)}: follows the tenant rule again")
    return 0


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    tenants = _tenants(settings, args.tenant)
    overrides = _rule_values(args)
    ranges = []
    for t in tenants:
        start = parse_when(args.start, t.timezone, "--from")
        end = parse_when(args.end, t.timezone, "--to")
        if end <= start:
            raise UsageError("--to: must be after --from")
        if end - start > _MAX_SPAN:
            raise UsageError("--to: at most 400 days after --from")
        ranges.append((t, start, end))

    now = datetime.now(timezone.utc)

    async def go() -> list[tuple[TenantSettings, list[Step]]]:
        out = []
        async with database(settings) as engine, engine.connect() as conn:
            for t, start, end in ranges:
                try:
                    out.append((t, await backtest(conn, t, start, end, overrides, now=now)))
                except ValueError as exc:
                    name, _, problem = str(exc).partition(": ")
                    raise UsageError(f"--{name.replace('_', '-')}: {problem}") from None
        return out

    results = run_async(go())
    if args.format == "json":
        print(orjson.dumps([_transition(t, s) for t, steps in results for s in steps], option=orjson.OPT_INDENT_2).decode())
        return 0
    for t, steps in results:
        fired = sum(s.transition == "firing" for s in steps)
        print(f"tenant {t.tenant_id}: {fired} fired, {len(steps) - fired} resolved")
        if any(r[0] is t and r[2] > now for r in ranges):
            print(f"  (--to is in the future: replayed up to now, {now.astimezone(t.zone).isoformat(timespec='seconds')})")
        for s in steps:
            f, b = s.verdict.figures, s.verdict.baseline
            base = f"baseline {_pct(b.rate)} (upper {_pct(b.upper_bound)}, {b.handled} calls)" if b else "no baseline"
            print(f"  {s.at.astimezone(t.zone).isoformat()}  {s.transition.upper():<8}  queue {_q(s.queue_id):<10}  "  # type: ignore[union-attr]
                  f"rate {_pct(f.abandon_rate)} ({f.abandoned_net}/{f.handled}, lower {_pct(s.verdict.lower_bound)}), {base}")
    return 0





def _transition(tenant: TenantSettings, s: Step) -> dict[str, Any]:
    f, b = s.verdict.figures, s.verdict.baseline
    return {
        "tenant_id": tenant.tenant_id, "queue_id": s.queue_id, "state": s.transition,
        "at": s.at.astimezone(tenant.zone).isoformat(),
        "offered": f.offered, "abandoned": f.abandoned_net, "handled": f.handled, "abandon_rate": f.abandon_rate,
        "rate_lower_bound": s.verdict.lower_bound,
        "baseline_rate": b.rate if b else None, "baseline_upper_bound": b.upper_bound if b else None,
    }


def _q(queue: QueueId) -> str:
    return "unassigned" if queue is None else str(queue)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"
