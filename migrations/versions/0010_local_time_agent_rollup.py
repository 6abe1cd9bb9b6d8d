"""Reports a person can read: local times, week and month buckets, an agent rollup.

- analytics.calls gains started_at_local, answered_at_local, ended_at_local
  (timestamp without zone, in the tenant's zone) and local_date (appended,
  so every existing column and query stays as it was).
- analytics.queue_stats_15m / _hourly / _daily gain the sums behind asa and
  aht (wait_answered_count, wait_answered_sum, talk_count, talk_sum), so a
  ratio over several rows can be recomputed from its parts instead of averaged.
- analytics.queue_stats_weekly (weeks start on Monday, local) and
  analytics.queue_stats_monthly (local calendar months), summed from the
  daily rollup on read.
- callstore.agent_rollup_daily: per tenant, agent and local day, maintained
  incrementally like the queue rollups: triggers on callstore.calls append
  the (tenant, agent, started_at) of every changed call to
  callstore.agent_dirty; reports/agent_rollups.py recomputes those days.
  analytics.agent_daily reads it instead of scanning every call.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import importlib

from migrations.script import run

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The queue ratio formulas are written once, in the reports migration; the
# new views quote them from there instead of copying them.
_reports = importlib.import_module("migrations.versions.0003_reports")
_RATIOS: str = _reports._RATIOS
_COUNTS: tuple[str, ...] = _reports._COUNTS
_SUMS: tuple[str, ...] = _reports._SUMS

# analytics.calls as migration 0001 created it; the new columns are appended.
_CALLS_COLUMNS = """
    c.tenant_id,
    c.call_id,
    c.direction,
    c.call_status,
    c.queue_id,
    q.name AS queue_name,
    c.hotline,
    c.caller_number,
    c.destination_number,
    c.agent,
    c.transaction_id,
    c.started_at,
    c.answered_at,
    c.ended_at,
    w.wait_seconds,
    floor(extract(epoch FROM c.ended_at - c.answered_at))::integer AS talk_seconds,
    c.hold_seconds,
    c.total_seconds,
    c.hangup_by,
    o.outcome,
    CASE WHEN c.direction = 'inbound' THEN o.outcome = 'answered' AND w.wait_seconds <= t.sla_seconds END
        AS answered_within_sla,
    CASE WHEN c.direction = 'inbound' THEN o.outcome IN ('abandoned', 'short_abandoned') AND w.wait_seconds <= t.sla_seconds END
        AS abandoned_within_sla,
    callstore.recording_status(c.tenant_id, c.call_id, c.recording_url) AS recording_status,
    c.first_source,
    c.flagged,
    c.updated_at"""

_LOCAL_COLUMNS = """,
    c.started_at AT TIME ZONE z.timezone AS started_at_local,
    c.answered_at AT TIME ZONE z.timezone AS answered_at_local,
    c.ended_at AT TIME ZONE z.timezone AS ended_at_local,
    (c.started_at AT TIME ZONE z.timezone)::date AS local_date"""

_CALLS_FROM = """
FROM callstore.calls c
LEFT JOIN callstore.queues q ON q.tenant_id = c.tenant_id AND q.queue_id = c.queue_id
CROSS JOIN LATERAL (SELECT callstore.wait_seconds(c.started_at, c.answered_at, c.ended_at, c.call_status) AS wait_seconds) w
CROSS JOIN LATERAL (SELECT callstore.sla_seconds(c.tenant_id, c.queue_id, c.started_at) AS sla_seconds,
                           callstore.short_abandon_seconds(c.tenant_id, c.queue_id, c.started_at) AS short_abandon_seconds) t
CROSS JOIN LATERAL (SELECT callstore.call_outcome(c.direction, c.answered_at, c.ended_at, c.call_status,
                                                  c.hangup_by, w.wait_seconds, t.short_abandon_seconds) AS outcome) o"""

# A LEFT JOIN on the tenants' primary key that the planner removes whenever
# a query reads none of the local columns (the rollups, the search).
_ZONE_JOIN = "\nLEFT JOIN callstore.tenants z ON z.tenant_id = c.tenant_id"

_SUM_COLUMNS = ",\n    r.wait_answered_count, r.wait_answered_sum, r.talk_count, r.talk_sum"


def _stats_columns() -> str:
    return f"""
    r.tenant_id,
    NULLIF(r.queue_key, -1) AS queue_id,
    q.name AS queue_name,
    r.bucket_start,
    r.bucket_local,
    r.offered,
    r.answered,
    r.abandoned,
    r.short_abandoned,
    r.unanswered_other,
    r.in_progress,
    r.answered_within_sla,
    r.abandoned_within_sla,{_RATIOS}"""


def _stats_view(view: str, source: str, *, replace: bool) -> str:
    verb = "CREATE OR REPLACE VIEW" if replace else "CREATE VIEW"
    return f"""
{verb} analytics.{view} AS
SELECT{_stats_columns()}{_SUM_COLUMNS}
FROM {source} r
LEFT JOIN callstore.queues q ON q.tenant_id = r.tenant_id AND q.queue_id = r.queue_key"""


def _calendar(unit: str) -> str:
    """Daily rollup rows summed per local week (ISO: from Monday) or month."""
    sums = ",\n           ".join(
        [f"sum(d.{c})::integer AS {c}" for c in _COUNTS] + [f"sum(d.{c})::bigint AS {c}" for c in _SUMS]
    )
    return f"""(
    SELECT d.tenant_id, d.queue_key,
           date_trunc('{unit}', d.bucket_local) AT TIME ZONE t.timezone AS bucket_start,
           date_trunc('{unit}', d.bucket_local) AS bucket_local,
           {sums},
           max(d.max_wait_seconds) AS max_wait_seconds
    FROM callstore.queue_rollup_daily d
    JOIN callstore.tenants t ON t.tenant_id = d.tenant_id
    GROUP BY d.tenant_id, d.queue_key, t.timezone, date_trunc('{unit}', d.bucket_local))"""


_AGENT_FIELDS = "(n.agent, n.direction, n.call_status, n.started_at, n.answered_at, n.ended_at, n.hold_seconds)"

UPGRADE = f"""
CREATE OR REPLACE VIEW analytics.calls AS
SELECT{_CALLS_COLUMNS}{_LOCAL_COLUMNS}{_CALLS_FROM}{_ZONE_JOIN};

{_stats_view("queue_stats_15m", "callstore.queue_rollup_15m", replace=True)};
{_stats_view("queue_stats_hourly", "callstore.queue_rollup_hourly", replace=True)};
{_stats_view("queue_stats_daily", "callstore.queue_rollup_daily", replace=True)};
{_stats_view("queue_stats_weekly", _calendar("week"), replace=False)};
{_stats_view("queue_stats_monthly", _calendar("month"), replace=False)};

-- Per tenant, agent and local day: the parts of analytics.agent_daily.
CREATE TABLE callstore.agent_rollup_daily (
    tenant_id     text NOT NULL,
    agent         text NOT NULL,
    day           date NOT NULL,
    day_start     timestamptz NOT NULL,
    calls         integer NOT NULL,
    answered      integer NOT NULL,
    outbound      integer NOT NULL,
    talk_count    integer NOT NULL,
    talk_sum      bigint NOT NULL,
    hold_sum      bigint NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent, day)
);
CREATE INDEX agent_rollup_daily_day ON callstore.agent_rollup_daily (tenant_id, day);

-- Keys of calls whose agent figures must be recomputed; appended by the
-- triggers below in the writer's transaction, drained by reports/agent_rollups.py.
CREATE TABLE callstore.agent_dirty (
    tenant_id   text NOT NULL,
    agent       text NOT NULL,
    started_at  timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);

-- The recompute of one agent-day reads that agent's calls of that day only.
CREATE INDEX calls_agent_started ON callstore.calls (tenant_id, agent, started_at);

-- Statement-level, like callstore.calls_mark_dirty: one INSERT ... SELECT per
-- ingest batch. An update marks the old and the new key of a call whose
-- agent figures can change (agent, direction, status, times, hold).
CREATE FUNCTION callstore.calls_mark_agent_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO callstore.agent_dirty (tenant_id, agent, started_at)
        SELECT n.tenant_id, n.agent, n.started_at FROM new_calls n
        WHERE n.agent IS NOT NULL AND n.started_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO callstore.agent_dirty (tenant_id, agent, started_at)
        SELECT n.tenant_id, n.agent, n.started_at FROM old_calls n
        WHERE n.agent IS NOT NULL AND n.started_at IS NOT NULL;
    ELSE
        INSERT INTO callstore.agent_dirty (tenant_id, agent, started_at)
        SELECT o.tenant_id, o.agent, o.started_at FROM old_calls o
        WHERE o.agent IS NOT NULL AND o.started_at IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM new_calls n
              WHERE n.tenant_id = o.tenant_id AND n.call_id = o.call_id
                AND {_AGENT_FIELDS} IS NOT DISTINCT FROM {_AGENT_FIELDS.replace("n.", "o.")})
        UNION
        SELECT n.tenant_id, n.agent, n.started_at FROM new_calls n
        WHERE n.agent IS NOT NULL AND n.started_at IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM old_calls o
              WHERE n.tenant_id = o.tenant_id AND n.call_id = o.call_id
                AND {_AGENT_FIELDS} IS NOT DISTINCT FROM {_AGENT_FIELDS.replace("n.", "o.")});
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_agent_rollup_insert AFTER INSERT ON callstore.calls
    REFERENCING NEW TABLE AS new_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_agent_dirty();
CREATE TRIGGER calls_agent_rollup_update AFTER UPDATE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_agent_dirty();
CREATE TRIGGER calls_agent_rollup_delete AFTER DELETE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_agent_dirty();

-- A tenant's zone moves every local day: drop its agent rows and mark its calls.
CREATE FUNCTION callstore.tenant_zone_changed_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS DISTINCT FROM OLD.timezone THEN
        DELETE FROM callstore.agent_rollup_daily WHERE tenant_id = NEW.tenant_id;
        INSERT INTO callstore.agent_dirty (tenant_id, agent, started_at)
        SELECT tenant_id, agent, started_at FROM callstore.calls
        WHERE tenant_id = NEW.tenant_id AND agent IS NOT NULL AND started_at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_zone_changed_agents AFTER UPDATE OF timezone ON callstore.tenants
    FOR EACH ROW EXECUTE FUNCTION callstore.tenant_zone_changed_agents();

-- The calls stored before this migration.
INSERT INTO callstore.agent_dirty (tenant_id, agent, started_at)
SELECT tenant_id, agent, started_at FROM callstore.calls WHERE agent IS NOT NULL AND started_at IS NOT NULL;

-- Same columns and types as before, read from the rollup.
CREATE OR REPLACE VIEW analytics.agent_daily AS
SELECT
    r.tenant_id,
    r.agent,
    r.day,
    r.day_start,
    r.answered::bigint AS answered,
    r.outbound::bigint AS outbound,
    r.talk_sum::bigint AS talk_seconds,
    r.hold_sum::bigint AS hold_seconds,
    r.talk_sum::float8 / NULLIF(r.talk_count, 0) AS aht_seconds,
    r.calls,
    r.talk_count
FROM callstore.agent_rollup_daily r;
"""

DOWNGRADE = f"""
DROP VIEW IF EXISTS analytics.agent_daily;
DROP TRIGGER IF EXISTS tenants_zone_changed_agents ON callstore.tenants;
DROP FUNCTION IF EXISTS callstore.tenant_zone_changed_agents();
DROP TRIGGER IF EXISTS calls_agent_rollup_delete ON callstore.calls;
DROP TRIGGER IF EXISTS calls_agent_rollup_update ON callstore.calls;
DROP TRIGGER IF EXISTS calls_agent_rollup_insert ON callstore.calls;
DROP FUNCTION IF EXISTS callstore.calls_mark_agent_dirty();
DROP INDEX IF EXISTS callstore.calls_agent_started;
DROP TABLE IF EXISTS callstore.agent_dirty;
DROP TABLE IF EXISTS callstore.agent_rollup_daily;
DROP VIEW IF EXISTS analytics.queue_stats_monthly;
DROP VIEW IF EXISTS analytics.queue_stats_weekly;
DROP VIEW IF EXISTS analytics.queue_stats_15m;
DROP VIEW IF EXISTS analytics.queue_stats_hourly;
DROP VIEW IF EXISTS analytics.queue_stats_daily;
{_reports._stats_view("queue_stats_15m", "queue_rollup_15m")};
{_reports._stats_view("queue_stats_hourly", "queue_rollup_hourly")};
{_reports._stats_view("queue_stats_daily", "queue_rollup_daily")};
DROP VIEW IF EXISTS analytics.calls;
CREATE VIEW analytics.calls AS
SELECT{_CALLS_COLUMNS}{_CALLS_FROM};
CREATE VIEW analytics.agent_daily AS
SELECT
    c.tenant_id,
    c.agent,
    (c.started_at AT TIME ZONE t.timezone)::date AS day,
    callstore.bucket_day(c.started_at, t.timezone) AS day_start,
    count(*) FILTER (WHERE c.direction = 'inbound' AND c.outcome = 'answered') AS answered,
    count(*) FILTER (WHERE c.direction = 'outbound') AS outbound,
    coalesce(sum(c.talk_seconds) FILTER (WHERE c.outcome = 'answered'), 0) AS talk_seconds,
    coalesce(sum(c.hold_seconds), 0) AS hold_seconds,
    avg(c.talk_seconds) FILTER (WHERE c.outcome = 'answered')::float8 AS aht_seconds
FROM analytics.calls c
JOIN callstore.tenants t ON t.tenant_id = c.tenant_id
WHERE c.agent IS NOT NULL AND c.started_at IS NOT NULL
GROUP BY c.tenant_id, c.agent, 3, 4;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
