"""Alert rules: one row per tenant with every value, optional per-queue overrides.

A queue's rule is its override row where set, else the tenant row, else the
defaults below (docs/alerts.md explains each). A queue is identified by its
`queue_id`; None is the unassigned queue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

QueueId = int | None


@dataclass(frozen=True)
class Rule:
    enabled: bool = True
    #: Calls that started in the last `window_minutes` are judged.
    window_minutes: int = 15
    #: Fewer offered calls than this never fire: a quiet queue says nothing.
    min_offered: int = 10
    #: Fewer abandoned calls (short abandons excluded) than this never fire.
    min_abandoned: int = 5
    #: The abandon rate must be above this absolute rate.
    floor_rate: float = 0.20
    #: Resolving needs the rate below max(clear_rate, the baseline's upper bound).
    clear_rate: float = 0.10
    #: Confidence of the Wilson intervals compared (two-sided).
    confidence: float = 0.95
    #: Weeks of history for the same-hour-of-week baseline (0: floor alone).
    baseline_weeks: int = 4
    #: Baseline calls needed before it is trusted; below, the floor alone decides.
    min_baseline_calls: int = 40
    #: Consecutive evaluations the condition must hold before firing.
    pending_evaluations: int = 2
    #: Consecutive evaluations the clear condition must hold before resolving.
    clear_evaluations: int = 2
    #: After a resolve, the same queue cannot fire again for this long.
    cooldown_minutes: int = 30

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_RULE = Rule()
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Rule))


def check_rule(rule: Rule) -> None:
    """Raise ValueError naming the first inconsistent value."""
    limits: dict[str, tuple[float, float]] = {
        "window_minutes": (1, 240), "min_offered": (1, 10**6), "min_abandoned": (1, 10**6),
        "floor_rate": (0, 0.999), "clear_rate": (0, 0.999), "confidence": (0.5, 0.9999),
        "baseline_weeks": (0, 12), "min_baseline_calls": (1, 10**7), "pending_evaluations": (1, 60),
        "clear_evaluations": (1, 60), "cooldown_minutes": (0, 1440),
    }
    for name, (lo, hi) in limits.items():
        value = getattr(rule, name)
        if not lo <= value <= hi:
            raise ValueError(f"{name}: must be between {lo} and {hi}")
    if rule.clear_rate > rule.floor_rate:
        raise ValueError("clear_rate: must not be above floor_rate, or an alert could resolve while still firing")


@dataclass(frozen=True)
class RuleBook:
    """The rules of one tenant."""

    tenant: Rule
    queues: Mapping[QueueId, Mapping[str, Any]]  # override values that are set

    def for_queue(self, queue_id: QueueId) -> Rule:
        override = self.queues.get(queue_id)
        return dataclasses.replace(self.tenant, **override) if override else self.tenant

    @property
    def max_window_minutes(self) -> int:
        return max([self.tenant.window_minutes, *(int(q.get("window_minutes", 0)) for q in self.queues.values())])

    def with_overrides(self, values: Mapping[str, Any]) -> RuleBook:
        """Every queue's rule with `values` forced (backtests try thresholds this way)."""
        return RuleBook(dataclasses.replace(self.tenant, **values),
                        {q: {**o, **values} for q, o in self.queues.items()})


_COLUMNS = ", ".join(FIELDS)

_ENSURE = text(
    f"""
    INSERT INTO callstore.alert_rules (tenant_id, scope, {_COLUMNS})
    SELECT t, 'tenant', {", ".join(f":{f}" for f in FIELDS)} FROM unnest(CAST(:tenants AS text[])) AS t
    ON CONFLICT (tenant_id) WHERE scope = 'tenant' DO NOTHING
    """
)


async def ensure_default_rules(conn: AsyncConnection, tenant_ids: list[str]) -> None:
    """Give every tenant its rule row (with the defaults) if it has none yet."""
    await conn.execute(_ENSURE, {"tenants": tenant_ids, **DEFAULT_RULE.as_dict()})


async def load_rules(conn: AsyncConnection, tenant_id: str) -> RuleBook:
    rows = await conn.execute(
        text(f"SELECT scope, queue_id, {_COLUMNS} FROM callstore.alert_rules WHERE tenant_id = :t"), {"t": tenant_id}
    )
    tenant = DEFAULT_RULE
    queues: dict[QueueId, dict[str, Any]] = {}
    for row in rows:
        values = {f: row._mapping[f] for f in FIELDS if row._mapping[f] is not None}
        if row.scope == "tenant":
            tenant = dataclasses.replace(DEFAULT_RULE, **values)
        elif values:
            queues[row.queue_id] = values
    return RuleBook(tenant, queues)


async def set_rule(conn: AsyncConnection, tenant_id: str, queue: QueueId | str, values: Mapping[str, Any]) -> Rule:
    """Set `values` on the tenant row (queue="tenant") or on a queue's override.

    Returns the queue's (or tenant's) resulting rule; raises ValueError when
    it would be inconsistent (the caller's transaction is then rolled back).
    """
    await ensure_default_rules(conn, [tenant_id])
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a rule setting")
    sets = ", ".join(f"{f} = :{f}" for f in values) or "tenant_id = tenant_id"
    if queue == "tenant":
        await conn.execute(
            text(f"UPDATE callstore.alert_rules SET {sets}, updated_at = now() WHERE tenant_id = :t AND scope = 'tenant'"),
            {"t": tenant_id, **values},
        )
    else:
        found = await conn.scalar(
            text("SELECT id FROM callstore.alert_rules WHERE tenant_id = :t AND scope = 'queue' "
                 "AND queue_id IS NOT DISTINCT FROM :q FOR UPDATE"),
            {"t": tenant_id, "q": queue},
        )
        if found is None:
            cols = ", ".join(values)
            await conn.execute(
                text(f"INSERT INTO callstore.alert_rules (tenant_id, scope, queue_id{', ' + cols if cols else ''}) "
                     f"VALUES (:t, 'queue', :q{''.join(', :' + f for f in values)})"),
                {"t": tenant_id, "q": queue, **values},
            )
        else:
            await conn.execute(
                text(f"UPDATE callstore.alert_rules SET {sets}, updated_at = now() WHERE tenant_id = :t AND id = :id"),
                {"t": tenant_id, "id": found, **values},
            )
    book = await load_rules(conn, tenant_id)
    rule = book.tenant if queue == "tenant" else book.for_queue(queue)  # type: ignore[arg-type]
    check_rule(rule)
    for q in book.queues:
        check_rule(book.for_queue(q))
    return rule


async def clear_rule(conn: AsyncConnection, tenant_id: str, queue: QueueId) -> bool:
    """Remove a queue's override; it follows the tenant row again."""
    result = await conn.execute(
        text("DELETE FROM callstore.alert_rules WHERE tenant_id = :t AND scope = 'queue' "
             "AND queue_id IS NOT DISTINCT FROM :q"),
        {"t": tenant_id, "q": queue},
    )
    return bool(result.rowcount)
