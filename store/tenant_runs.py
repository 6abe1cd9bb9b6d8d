"""Many tenants, fairly: each tenant's share of a scheduled job runs as its own task.

A job that talks to Alohub (backfill, queue catalogue, campaigns, recordings)
runs one task per tenant, at most `concurrency` of them at once (the job's
slots, CALLSTORE_TENANT_CONCURRENCY), each tenant in at most one slot of the
job, started in the order the tenants are configured. Every task has:

- its own time budget (CALLSTORE_TENANT_RUN_BUDGET): when it is spent the
  task is cancelled with a message saying so; what it already wrote stays
  (the backfill's cursor advances window by window), and the next run goes on
  from there. A slow tenant thus holds one slot of the job for at most its
  budget and never delays the tenants after it by more than that;
- its own errors: an exception, a timeout or a long 429 back-off ends that
  tenant's share (logged once, naming the tenant), never another's.

The job lease (store/jobs.py) stays one per job: one replica runs a job for
every tenant, the others skip it. Outcomes are counted per (job, tenant) in a
process-wide `TenantRuns`, which /metrics exposes (bounded: jobs x configured
tenants).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("callstore.tenant_runs")

T = TypeVar("T")

#: Tenants of one job that run at once, by default.
DEFAULT_CONCURRENCY = 8
#: Seconds one tenant's share of one run may take, by default.
DEFAULT_BUDGET_S = 600

OUTCOMES = ("ok", "failed", "cut")


class TenantsFailed(RuntimeError):
    """Some tenants' shares of a job failed or were cut (each already logged); the others ran."""

    def __init__(self, job: str, failures: Sequence[tuple[str, str]]) -> None:
        self.job = job
        self.failures = list(failures)
        names = ", ".join(t for t, _ in self.failures[:10]) + (" and more" if len(self.failures) > 10 else "")
        super().__init__(f"{len(self.failures)} tenant(s) did not complete: {names}")


@dataclass
class TenantResult(Generic[T]):
    tenant_id: str
    #: ok, failed (it raised) or cut (its time budget was spent).
    outcome: str
    seconds: float
    started: float
    finished: float
    result: T | None = None
    error: str | None = None


@dataclass
class _Series:
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    last_success: float | None = None
    last_duration: float | None = None
    duration_sum: float = 0.0
    duration_count: int = 0


class TenantRuns:
    """Per (job, tenant) outcomes of this process, and Alohub requests per tenant."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        self._requests: dict[tuple[str, str], int] = {}

    def record(self, job: str, tenant: str, outcome: str, seconds: float) -> None:
        s = self._series.setdefault((job, tenant), _Series())
        s.runs[outcome] = s.runs.get(outcome, 0) + 1
        s.last_duration = seconds
        s.duration_sum += seconds
        s.duration_count += 1
        if outcome == "ok":
            s.last_success = time.time()

    def request(self, tenant: str, outcome: str) -> None:
        """One Alohub request answered (`outcome`: ok, client_error, server_error, rate_limited, network_error)."""
        key = (tenant, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1

    def runs(self, job: str, tenant: str) -> dict[str, int]:
        s = self._series.get((job, tenant))
        return dict(s.runs) if s else dict.fromkeys(OUTCOMES, 0)

    def requests(self, tenant: str) -> dict[str, int]:
        return {o: n for (t, o), n in self._requests.items() if t == tenant}

    def text(self) -> str:
        """Prometheus text exposition of every series."""
        lines = [
            "# HELP callstore_job_tenant_runs_total Runs of a job's share for one tenant, by outcome "
            "(cut: its time budget was spent)",
            "# TYPE callstore_job_tenant_runs_total counter",
        ]
        for (job, tenant), s in sorted(self._series.items()):
            for outcome, n in s.runs.items():
                lines.append(f'callstore_job_tenant_runs_total{{job="{_label(job)}",tenant="{_label(tenant)}",'
                             f'outcome="{outcome}"}} {n}')
        lines += ["# HELP callstore_job_last_success_timestamp_seconds When a job's share for one tenant last "
                  "ended ok (Unix time)",
                  "# TYPE callstore_job_last_success_timestamp_seconds gauge"]
        for (job, tenant), s in sorted(self._series.items()):
            if s.last_success is not None:
                lines.append(f'callstore_job_last_success_timestamp_seconds{{job="{_label(job)}",'
                             f'tenant="{_label(tenant)}"}} {s.last_success:.3f}')
        lines += ["# HELP callstore_job_duration_seconds Time a job's share for one tenant took",
                  "# TYPE callstore_job_duration_seconds summary"]
        for (job, tenant), s in sorted(self._series.items()):
            labels = f'job="{_label(job)}",tenant="{_label(tenant)}"'
            lines.append(f"callstore_job_duration_seconds_sum{{{labels}}} {s.duration_sum:.3f}")
            lines.append(f"callstore_job_duration_seconds_count{{{labels}}} {s.duration_count}")
        lines += ["# HELP callstore_alohub_requests_total Requests to Alohub by tenant and answer",
                  "# TYPE callstore_alohub_requests_total counter"]
        for (tenant, outcome), n in sorted(self._requests.items()):
            lines.append(f'callstore_alohub_requests_total{{tenant="{_label(tenant)}",outcome="{outcome}"}} {n}')
        return "\n".join(lines) + "\n"


#: The process's tallies (what /metrics shows); tests pass their own.
TENANT_RUNS = TenantRuns()


async def tenant_metrics(engine: object = None) -> str:
    """A /metrics source: this process's per-tenant job series."""
    return TENANT_RUNS.text()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def cut_message(budget_s: float) -> str:
    return (f"cut after its time budget of {budget_s:g} s (CALLSTORE_TENANT_RUN_BUDGET); "
            "the next run goes on from where it stopped")


async def run_per_tenant(job: str, tenants: Sequence[str], work: Callable[[str], Awaitable[T]], *,
                         concurrency: int = DEFAULT_CONCURRENCY, budget_s: float = DEFAULT_BUDGET_S,
                         runs: TenantRuns | None = None,
                         describe: Callable[[str, T], str] | None = None) -> list[TenantResult[T]]:
    """Run `work(tenant)` for every tenant: at most `concurrency` at once, each within `budget_s`.

    Never raises for a tenant's failure: each one's outcome is in the result
    (in the order of `tenants`), logged once at INFO (ok) or ERROR (failed,
    cut) with the tenant named, and counted in `runs`. Cancelling the caller
    cancels every tenant's task.
    """
    runs = runs if runs is not None else TENANT_RUNS
    slots = asyncio.Semaphore(max(1, concurrency))
    unique = list(dict.fromkeys(tenants))

    async def one(tenant: str) -> TenantResult[T]:
        async with slots:
            started = time.time()
            t0 = time.monotonic()
            task = asyncio.create_task(work(tenant), name=f"{job}:{tenant}")
            try:
                done, _ = await asyncio.wait({task}, timeout=budget_s)
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            outcome, result, error = "ok", None, None
            if not done:
                message = cut_message(budget_s)
                task.cancel(message)
                await asyncio.gather(task, return_exceptions=True)
                outcome, error = "cut", message
            elif task.cancelled():
                outcome, error = "failed", "cancelled"
            elif (exc := task.exception()) is not None:
                outcome, error = "failed", (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
            else:
                result = task.result()
            seconds = time.monotonic() - t0
            runs.record(job, tenant, outcome, seconds)
            if outcome == "ok":
                said = describe(tenant, result) if describe is not None and result is not None else "done"
                log.info("job %s, tenant %s: ok in %.1f s; %s", job, tenant, seconds, said)
            else:
                log.error("job %s, tenant %s: %s after %.1f s: %s", job, tenant, outcome, seconds, error)
            return TenantResult(tenant, outcome, seconds, started, time.time(), result, error)

    return list(await asyncio.gather(*(one(t) for t in unique)))
