"""Per-queue abandon rate and alert state as Prometheus lines, for teams that
alert with Prometheus: read at scrape time from alert_states (shared by every
replica), so any receiver answers the same."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.alerts.evaluate import STATES

_ROWS = text("""
    SELECT s.tenant_id, s.queue_id, q.name, s.state, s.window_minutes, s.offered, s.abandoned, s.short_abandoned,
           s.handled, s.abandon_rate, s.evaluated_at
    FROM callstore.alert_states s
    LEFT JOIN callstore.queues q ON q.tenant_id = s.tenant_id AND q.queue_id = s.queue_id
    ORDER BY s.tenant_id, s.queue_id NULLS FIRST
""")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def alert_metrics(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        rows = (await conn.execute(_ROWS)).all()
    out = {
        "rate": ["# HELP callstore_queue_abandon_rate Abandon rate ((abandoned - short abandoned) / handled) of the alert window, per queue, at the last evaluation (NaN: no handled call)",
                 "# TYPE callstore_queue_abandon_rate gauge"],
        "offered": ["# HELP callstore_queue_window_offered Calls offered in the alert window at the last evaluation",
                    "# TYPE callstore_queue_window_offered gauge"],
        "abandoned": ["# HELP callstore_queue_window_abandoned Calls abandoned (short abandons excluded) in the alert window",
                      "# TYPE callstore_queue_window_abandoned gauge"],
        "state": ["# HELP callstore_alert_state Alert state per queue: 1 on the current state",
                  "# TYPE callstore_alert_state gauge"],
        "evaluated": ["# HELP callstore_alert_evaluated_timestamp_seconds When the queue was last evaluated",
                      "# TYPE callstore_alert_evaluated_timestamp_seconds gauge"],
    }
    for r in rows:
        queue = "unassigned" if r.queue_id is None else str(r.queue_id)
        labels = f'tenant="{_label(r.tenant_id)}",queue="{queue}",queue_name="{_label(r.name or queue)}"'
        rate = "NaN" if r.abandon_rate is None else repr(float(r.abandon_rate))
        out["rate"].append(f"callstore_queue_abandon_rate{{{labels},window_minutes=\"{r.window_minutes}\"}} {rate}")
        out["offered"].append(f"callstore_queue_window_offered{{{labels}}} {r.offered}")
        out["abandoned"].append(f"callstore_queue_window_abandoned{{{labels}}} {r.abandoned - r.short_abandoned}")
        for state in STATES:
            out["state"].append(f'callstore_alert_state{{{labels},state="{state}"}} {int(r.state == state)}')
        out["evaluated"].append(f"callstore_alert_evaluated_timestamp_seconds{{{labels}}} {r.evaluated_at.timestamp()}")
    return "\n".join(line for block in out.values() for line in block) + "\n"
