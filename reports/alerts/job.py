"""The alerts job: every minute, evaluate every tenant's queues, then send the outbox.

Run by the scheduler under the job's lease (once across replicas);
each tenant's evaluation also takes a transaction lock and a cursor, so a
minute is never evaluated twice even by a stray concurrent run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.alerts.evaluate import Step
from reports.alerts.notifiers import RETRY_DELAYS, build_notifiers
from reports.alerts.outbox import Delivered, deliver
from reports.alerts.state import evaluate_tenant
from store.jobs import Job
from store.settings import Settings

log = logging.getLogger("callstore.alerts")


@dataclass
class Run:
    transitions: list[Step] = field(default_factory=list)
    delivered: Delivered = field(default_factory=Delivered)


async def run_alerts(engine: AsyncEngine, settings: Settings, *, now: datetime | None = None,
                     client: httpx.AsyncClient | None = None,
                     retry_delays: Sequence[float] = RETRY_DELAYS) -> Run:
    """One run: evaluate up to `now` (default: the clock), then deliver what is due."""
    now = now or datetime.now(timezone.utc)
    notifiers = build_notifiers(settings, retry_delays)
    run = Run()
    for tenant in settings.tenants:
        async with engine.begin() as conn:
            evaluated = await evaluate_tenant(conn, tenant, now, sorted(notifiers))
        for s in evaluated.transitions:
            f = s.verdict.figures
            rate = "none handled" if f.abandon_rate is None else f"{100 * f.abandon_rate:.1f} %"
            log.info("Alert %s for queue %s of tenant %s at %s: abandon rate %s (%d of %d handled calls abandoned).",
                     s.transition, "unassigned" if s.queue_id is None else s.queue_id, tenant.tenant_id,
                     s.at.isoformat(), rate, f.abandoned_net, f.handled)
        run.transitions.extend(evaluated.transitions)
    if notifiers:
        if client is None:
            async with httpx.AsyncClient(follow_redirects=False) as own:
                run.delivered = await deliver(engine, notifiers, own)
        else:
            run.delivered = await deliver(engine, notifiers, client)
    return run


def alerts_job(settings: Settings) -> Job:
    async def run(engine: AsyncEngine, s: Settings) -> None:
        await run_alerts(engine, s)

    notice = None
    if not (settings.alert_webhook_url or settings.alert_slack_url):
        notice = ("no notifier is configured (CALLSTORE_ALERT_WEBHOOK_URL, CALLSTORE_ALERT_SLACK_URL): "
                  "alerts are evaluated and recorded in analytics.alerts and /metrics, but nobody is notified")
    return Job("alerts", run, settings.alert_interval_s, notice=notice)
