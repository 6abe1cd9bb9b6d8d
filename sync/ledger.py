"""The reconciliation ledger: what each backfill run found, per local day.

- `first_seen`: calls the run created, i.e. the webhook never delivered them;
- `changed`: calls that existed and whose merged row the run changed, with a
  count per field in `changed_fields` (`history_source` is left out: only the
  history carries it, so its first value is not a correction);
- `webhook_only`: calls of the run's window that the webhook delivered and the
  history did not list (seen_webhook and not seen_history), counted when the run ends;
- `records`: history records the run received.

Rows are added to in the same transaction as the calls they describe, so the
ledger never counts what was not committed. Also here: run rows, cursors
and the `/metrics` text read from them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.ingest import CallChange

#: Fields whose change is not a correction of what the webhook said.
NOT_CORRECTIONS = frozenset({"history_source"})


@dataclass
class DayCounts:
    records: int = 0
    first_seen: int = 0
    changed: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    webhook_only: int = 0


@dataclass
class Tally:
    """Ledger counts by local day, for one batch or a whole run."""

    days: dict[date, DayCounts] = field(default_factory=lambda: defaultdict(DayCounts))

    def record(self, day: date) -> None:
        self.days[day].records += 1

    def changes(self, changes: Iterable[CallChange], day_of: Mapping[str, date], default: date) -> None:
        for ch in changes:
            counts = self.days[day_of.get(ch.call_id, default)]
            if ch.created:
                counts.first_seen += 1
                continue
            fields = [f for f in ch.changed_fields if f not in NOT_CORRECTIONS]
            if fields:
                counts.changed += 1
                counts.fields.update(fields)

    def add(self, other: Tally) -> None:
        for day, c in other.days.items():
            mine = self.days[day]
            mine.records += c.records
            mine.first_seen += c.first_seen
            mine.changed += c.changed
            mine.fields.update(c.fields)
            mine.webhook_only += c.webhook_only

    @property
    def first_seen(self) -> int:
        return sum(c.first_seen for c in self.days.values())

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.days.values())

    @property
    def webhook_only(self) -> int:
        return sum(c.webhook_only for c in self.days.values())

    @property
    def fields(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.days.values():
            total.update(c.fields)
        return total


_ADD_LEDGER = text(
    """
    INSERT INTO callstore.ingest_ledger AS l
        (run_id, tenant_id, day, records, first_seen, changed, changed_fields, webhook_only)
    SELECT :run_id, :tenant_id, u.day, u.records, u.first_seen, u.changed, u.fields, u.webhook_only
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(day date, records int, first_seen int, changed int, fields jsonb, webhook_only int)
    ON CONFLICT (tenant_id, run_id, day) DO UPDATE SET
        records = l.records + excluded.records,
        first_seen = l.first_seen + excluded.first_seen,
        changed = l.changed + excluded.changed,
        webhook_only = l.webhook_only + excluded.webhook_only,
        changed_fields = (
            SELECT coalesce(jsonb_object_agg(s.key, s.n), '{}'::jsonb)
            FROM (SELECT e.key, sum(e.value::int) AS n
                  FROM (SELECT * FROM jsonb_each_text(l.changed_fields)
                        UNION ALL SELECT * FROM jsonb_each_text(excluded.changed_fields)) e
                  GROUP BY e.key) s)
    """
)


async def add_to_ledger(conn: AsyncConnection, run_id: int, tenant_id: str, tally: Tally) -> None:
    rows = [
        {"day": d.isoformat(), "records": c.records, "first_seen": c.first_seen, "changed": c.changed,
         "fields": dict(c.fields), "webhook_only": c.webhook_only}
        for d, c in sorted(tally.days.items())
    ]
    if rows:
        await conn.execute(_ADD_LEDGER, {"run_id": run_id, "tenant_id": tenant_id, "rows": orjson.dumps(rows).decode()})


_WEBHOOK_ONLY = text(
    """
    SELECT (c.started_at AT TIME ZONE :tz)::date AS day, count(*) AS n
    FROM callstore.calls c
    WHERE c.tenant_id = :tenant_id AND c.started_at >= :start AND c.started_at < :end
      AND c.seen_webhook AND NOT c.seen_history
    GROUP BY 1
    """
)


async def webhook_only(conn: AsyncConnection, tenant_id: str, tz: str, start: datetime, end: datetime) -> Tally:
    tally = Tally()
    for day, n in await conn.execute(_WEBHOOK_ONLY, {"tz": tz, "tenant_id": tenant_id, "start": start, "end": end}):
        tally.days[day].webhook_only = int(n)
    return tally


# -- runs and cursors -------------------------------------------------------

async def start_run(conn: AsyncConnection, tenant_id: str, kind: str, source: str, start: datetime,
                    end: datetime, covered_until: datetime | None = None) -> int:
    """A new run of [start, end); `covered_until`: where a resumed run starts (default: start)."""
    run_id = await conn.scalar(
        text(
            """
            INSERT INTO callstore.ingest_runs (tenant_id, kind, source, window_start, window_end, covered_until)
            VALUES (:t, :k, :s, :a, :b, coalesce(CAST(:c AS timestamptz), :a)) RETURNING run_id
            """
        ),
        {"t": tenant_id, "k": kind, "s": source, "a": start, "b": end, "c": covered_until},
    )
    return int(run_id)


async def resume_point(conn: AsyncConnection, tenant_id: str, source: str, start: datetime,
                       end: datetime) -> datetime | None:
    """Where a manual run of [start, end) resumes: the end of what the latest manual run of the same
    tenant, source and range covered, if that run stopped early (not 'ok') after covering some."""
    row = (await conn.execute(
        text(
            """
            SELECT status, covered_until FROM callstore.ingest_runs
            WHERE tenant_id = :t AND kind = 'manual' AND source = :s AND window_start = :a AND window_end = :b
              AND status <> 'running'
            ORDER BY run_id DESC LIMIT 1
            """
        ),
        {"t": tenant_id, "s": source, "a": start, "b": end},
    )).first()
    if row is None or row.status == "ok" or row.covered_until <= start:
        return None
    return row.covered_until  # type: ignore[no-any-return]


async def progress_run(conn: AsyncConnection, run_id: int, tenant_id: str, pages: int, records: int,
                       covered_until: datetime | None) -> None:
    await conn.execute(
        text(
            """
            UPDATE callstore.ingest_runs
            SET pages = pages + :p, records = records + :r,
                covered_until = greatest(covered_until, coalesce(CAST(:c AS timestamptz), covered_until))
            WHERE tenant_id = :t AND run_id = :id
            """
        ),
        {"t": tenant_id, "id": run_id, "p": pages, "r": records, "c": covered_until},
    )


async def finish_run(conn: AsyncConnection, run_id: int, tenant_id: str, status: str,
                     error: str | None = None) -> None:
    await conn.execute(
        text("UPDATE callstore.ingest_runs SET status = :s, error = :e, finished_at = now() "
             "WHERE tenant_id = :t AND run_id = :id"),
        {"t": tenant_id, "id": run_id, "s": status, "e": error},
    )


async def abandon_stale_runs(conn: AsyncConnection, tenant_id: str) -> int:
    """Scheduled runs still 'running' while the caller holds the job lock died with their process."""
    result = await conn.execute(
        text(
            """
            UPDATE callstore.ingest_runs SET status = 'abandoned', finished_at = now(),
                error = 'the process running it stopped'
            WHERE tenant_id = :t AND kind = 'scheduled' AND status = 'running'
            """
        ),
        {"t": tenant_id},
    )
    return int(result.rowcount or 0)


async def read_cursor(conn: AsyncConnection, tenant_id: str, name: str) -> datetime | None:
    value = await conn.scalar(
        text("SELECT position FROM callstore.sync_cursors WHERE tenant_id = :t AND name = :n"),
        {"t": tenant_id, "n": name},
    )
    return value  # type: ignore[no-any-return]


async def advance_cursor(conn: AsyncConnection, tenant_id: str, name: str, position: datetime) -> None:
    """Move the cursor to `position` unless it is already further (it never goes back)."""
    await conn.execute(
        text(
            """
            INSERT INTO callstore.sync_cursors AS s (tenant_id, name, position) VALUES (:t, :n, :p)
            ON CONFLICT (tenant_id, name) DO UPDATE
                SET position = greatest(s.position, excluded.position), updated_at = now()
                WHERE excluded.position > s.position
            """
        ),
        {"t": tenant_id, "n": name, "p": position},
    )


# -- /metrics ----------------------------------------------------------------

_METRICS = text(
    """
    SELECT r.tenant_id,
           max(extract(epoch FROM r.finished_at)) FILTER (WHERE r.status = 'ok') AS last_ok,
           count(*) FILTER (WHERE r.status = 'failed') AS failed,
           count(*) FILTER (WHERE r.status = 'ok') AS ok,
           (SELECT extract(epoch FROM now() - s.position) FROM callstore.sync_cursors s
             WHERE s.tenant_id = r.tenant_id AND s.name = 'backfill') AS lag,
           coalesce((SELECT sum(l.first_seen) FROM callstore.ingest_ledger l WHERE l.tenant_id = r.tenant_id), 0),
           coalesce((SELECT sum(l.changed) FROM callstore.ingest_ledger l WHERE l.tenant_id = r.tenant_id), 0),
           coalesce((SELECT sum(l.webhook_only) FROM callstore.ingest_ledger l
                      WHERE l.tenant_id = r.tenant_id
                        AND l.run_id = (SELECT max(x.run_id) FROM callstore.ingest_runs x
                                         WHERE x.tenant_id = r.tenant_id AND x.status = 'ok')), 0)
    FROM callstore.ingest_runs r
    GROUP BY r.tenant_id
    ORDER BY r.tenant_id
    """
)


async def ledger_metrics(engine: AsyncEngine) -> str:
    """Prometheus text for /metrics, read from the shared tables at scrape time."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_METRICS)).all()
    lines = [
        "# HELP callstore_backfill_last_success_timestamp_seconds End of the last successful backfill run",
        "# TYPE callstore_backfill_last_success_timestamp_seconds gauge",
        "# HELP callstore_backfill_runs Backfill runs by final status",
        "# TYPE callstore_backfill_runs gauge",
        "# HELP callstore_backfill_cursor_lag_seconds Age of the scheduled backfill's cursor",
        "# TYPE callstore_backfill_cursor_lag_seconds gauge",
        "# HELP callstore_backfill_first_seen_calls Calls first seen by backfill (missed by the webhook), all runs",
        "# TYPE callstore_backfill_first_seen_calls gauge",
        "# HELP callstore_backfill_changed_calls Calls changed by backfill, all runs",
        "# TYPE callstore_backfill_changed_calls gauge",
        "# HELP callstore_backfill_webhook_only_calls Calls seen only by webhook in the last successful run's window",
        "# TYPE callstore_backfill_webhook_only_calls gauge",
    ]
    for tenant, last_ok, failed, ok, lag, first_seen, changed, only in rows:
        t = _label(tenant)
        if last_ok is not None:
            lines.append(f'callstore_backfill_last_success_timestamp_seconds{{tenant="{t}"}} {float(last_ok):.3f}')
        lines.append(f'callstore_backfill_runs{{tenant="{t}",status="ok"}} {int(ok)}')
        lines.append(f'callstore_backfill_runs{{tenant="{t}",status="failed"}} {int(failed)}')
        if lag is not None:
            lines.append(f'callstore_backfill_cursor_lag_seconds{{tenant="{t}"}} {float(lag):.3f}')
        lines.append(f'callstore_backfill_first_seen_calls{{tenant="{t}"}} {int(first_seen)}')
        lines.append(f'callstore_backfill_changed_calls{{tenant="{t}"}} {int(changed)}')
        lines.append(f'callstore_backfill_webhook_only_calls{{tenant="{t}"}} {int(only)}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
