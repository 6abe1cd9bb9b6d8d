"""Reports: versioned queue thresholds, incremental queue rollups, the BI views.

- callstore.queue_thresholds: append-only versions of the per-queue
  thresholds; callstore.sla_seconds / short_abandon_seconds are recompiled
  from it on every change (see callstore.compile_thresholds).
- callstore.rollup_dirty: (tenant, queue, started_at) of every inbound call
  inserted, changed or deleted, written by statement-level triggers in the
  writer's transaction; reports/rollups.py drains it.
- callstore.queue_rollup_15m / _hourly / _daily: sums and counts per tenant,
  queue and bucket of the tenant's local time.
- analytics.queue_stats_15m / _hourly / _daily and analytics.agent_daily.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Stored per bucket; every ratio of docs/metrics.md is computed from these in the views.
_COUNTS = (
    "offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
    "answered_within_sla", "abandoned_within_sla", "wait_answered_count", "talk_count",
)
_SUMS = ("wait_answered_sum", "talk_sum")


def _rollup_table(name: str) -> str:
    counts = "\n".join(f"    {c} integer NOT NULL," for c in _COUNTS)
    sums = "\n".join(f"    {c} bigint NOT NULL," for c in _SUMS)
    return f"""
CREATE TABLE callstore.{name} (
    tenant_id      text NOT NULL,
    queue_key      bigint NOT NULL,
    bucket_start   timestamptz NOT NULL,
    bucket_local   timestamp NOT NULL,
{counts}
{sums}
    max_wait_seconds integer,
    refreshed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, queue_key, bucket_start)
);
CREATE INDEX {name}_bucket ON callstore.{name} (tenant_id, bucket_start)"""


# The metric formulas, written once; docs/bi.md and docs/metrics.md quote them.
_RATIOS = """
    r.answered_within_sla::float8
        / NULLIF(r.answered + r.abandoned + r.unanswered_other - r.short_abandoned, 0) AS service_level,
    r.answered_within_sla::float8 / NULLIF(r.answered, 0) AS service_level_answered,
    (r.answered_within_sla + r.abandoned_within_sla)::float8
        / NULLIF(r.answered + r.abandoned, 0) AS service_level_abandon_ok,
    (r.abandoned - r.short_abandoned)::float8
        / NULLIF(r.answered + r.abandoned + r.unanswered_other - r.short_abandoned, 0) AS abandon_rate,
    r.wait_answered_sum::float8 / NULLIF(r.wait_answered_count, 0) AS asa_seconds,
    r.talk_sum::float8 / NULLIF(r.talk_count, 0) AS aht_seconds,
    r.max_wait_seconds"""


def _stats_view(view: str, table: str) -> str:
    return f"""
CREATE VIEW analytics.{view} AS
SELECT
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
    r.abandoned_within_sla,{_RATIOS}
FROM callstore.{table} r
LEFT JOIN callstore.queues q ON q.tenant_id = r.tenant_id AND q.queue_id = r.queue_key"""


UPGRADE = f"""
-- Bucket starts in the tenant's zone. 15m and hour: the instant minus the
-- local time's offset into its bucket, so a repeated local hour (DST fall
-- back) stays two buckets and half-hour zones (Asia/Kolkata) still align.
CREATE FUNCTION callstore.bucket_15m(p_at timestamptz, p_zone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT p_at - ((p_at AT TIME ZONE p_zone)
                   - date_bin('15 minutes', p_at AT TIME ZONE p_zone, timestamp '2000-01-01'))
$$;

CREATE FUNCTION callstore.bucket_hour(p_at timestamptz, p_zone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT p_at - ((p_at AT TIME ZONE p_zone) - date_trunc('hour', p_at AT TIME ZONE p_zone))
$$;

CREATE FUNCTION callstore.bucket_day(p_at timestamptz, p_zone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT date_trunc('day', p_at AT TIME ZONE p_zone) AT TIME ZONE p_zone
$$;

-- The start of the next local day (23, 24 or 25 hours later).
CREATE FUNCTION callstore.next_day(p_day_start timestamptz, p_zone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT (date_trunc('day', p_day_start AT TIME ZONE p_zone) + interval '1 day') AT TIME ZONE p_zone
$$;

-- Versions of the per-queue thresholds (SLA and short-abandon seconds). Append-only: a change is a
-- new row, so the history of every change stays. The effective version of a
-- call is the one with the latest valid_from <= started_at (ties: latest id).
-- queue_id NULL is the unassigned queue.
CREATE TABLE callstore.queue_thresholds (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              text NOT NULL,
    queue_id               bigint,
    valid_from             timestamptz NOT NULL DEFAULT '-infinity',
    sla_seconds            integer NOT NULL CHECK (sla_seconds >= 0),
    short_abandon_seconds  integer NOT NULL CHECK (short_abandon_seconds >= 0),
    note                   text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_thresholds_queue ON callstore.queue_thresholds (tenant_id, queue_id, valid_from);

-- Rewrites callstore.sla_seconds and callstore.short_abandon_seconds from the
-- table as one CASE expression. A function that reads a table cannot be
-- inlined and costs ~10 us per call (analytics.calls calls both per row: 100+ s
-- over 10M calls); a CASE over constants is inlined by the planner and costs
-- nothing. The table stays the record; the functions are derived from it.
CREATE FUNCTION callstore.compile_thresholds() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g record;
    sla text := '';
    short text := '';
    queue_test text;
BEGIN
    -- Serialise recompilations: concurrent CREATE OR REPLACE of one function fails.
    PERFORM pg_advisory_xact_lock(1919905900, 1);
    FOR g IN
        SELECT v.tenant_id, v.queue_id,
               string_agg(format('WHEN p_started_at >= %L::timestamptz THEN %s', v.valid_from, v.sla_seconds),
                          ' ' ORDER BY v.valid_from DESC) AS sla_cases,
               string_agg(format('WHEN p_started_at >= %L::timestamptz THEN %s', v.valid_from, v.short_abandon_seconds),
                          ' ' ORDER BY v.valid_from DESC) AS short_cases
        FROM (SELECT DISTINCT ON (tenant_id, queue_id, valid_from) *
              FROM callstore.queue_thresholds
              ORDER BY tenant_id, queue_id, valid_from, id DESC) v
        GROUP BY v.tenant_id, v.queue_id
        ORDER BY v.tenant_id, v.queue_id
    LOOP
        queue_test := CASE WHEN g.queue_id IS NULL THEN 'p_queue_id IS NULL'
                           ELSE format('p_queue_id = %s', g.queue_id) END;
        sla := sla || format(' WHEN p_tenant = %L AND %s THEN CASE %s ELSE 20 END',
                             g.tenant_id, queue_test, g.sla_cases);
        short := short || format(' WHEN p_tenant = %L AND %s THEN CASE %s ELSE 5 END',
                                 g.tenant_id, queue_test, g.short_cases);
    END LOOP;
    EXECUTE format('CREATE OR REPLACE FUNCTION callstore.sla_seconds(p_tenant text, p_queue_id bigint, '
                   'p_started_at timestamptz) RETURNS integer LANGUAGE sql STABLE AS %L',
                   CASE WHEN sla = '' THEN 'SELECT 20' ELSE 'SELECT CASE' || sla || ' ELSE 20 END' END);
    EXECUTE format('CREATE OR REPLACE FUNCTION callstore.short_abandon_seconds(p_tenant text, p_queue_id bigint, '
                   'p_started_at timestamptz) RETURNS integer LANGUAGE sql STABLE AS %L',
                   CASE WHEN short = '' THEN 'SELECT 5' ELSE 'SELECT CASE' || short || ' ELSE 5 END' END);
END
$$;

-- Keys of calls whose figures must be recomputed. Appended by triggers in the
-- writer's transaction (so no committed change is missed), drained by
-- refresh_rollups (reports/rollups.py). queue_id NULL is the unassigned queue.
CREATE TABLE callstore.rollup_dirty (
    tenant_id   text NOT NULL,
    queue_id    bigint,
    started_at  timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);

-- A new threshold version: recompile, and mark the calls it governs.
CREATE FUNCTION callstore.queue_thresholds_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'callstore.queue_thresholds is append-only: insert a new version instead';
    END IF;
    PERFORM callstore.compile_thresholds();
    INSERT INTO callstore.rollup_dirty (tenant_id, queue_id, started_at)
    SELECT c.tenant_id, c.queue_id, c.started_at
    FROM (SELECT tenant_id, queue_id, min(valid_from) AS since FROM new_versions GROUP BY 1, 2) n
    JOIN callstore.calls c ON c.tenant_id = n.tenant_id AND c.queue_id = n.queue_id AND c.started_at >= n.since
    WHERE c.direction = 'inbound'
    UNION ALL
    SELECT c.tenant_id, c.queue_id, c.started_at
    FROM (SELECT tenant_id, min(valid_from) AS since FROM new_versions WHERE queue_id IS NULL GROUP BY 1) n
    JOIN callstore.calls c ON c.tenant_id = n.tenant_id AND c.queue_id IS NULL AND c.started_at >= n.since
    WHERE c.direction = 'inbound';
    RETURN NULL;
END
$$;

CREATE TRIGGER queue_thresholds_insert AFTER INSERT ON callstore.queue_thresholds
    REFERENCING NEW TABLE AS new_versions
    FOR EACH STATEMENT EXECUTE FUNCTION callstore.queue_thresholds_changed();
CREATE TRIGGER queue_thresholds_append_only BEFORE UPDATE OR DELETE ON callstore.queue_thresholds
    FOR EACH STATEMENT EXECUTE FUNCTION callstore.queue_thresholds_changed();

-- Statement-level, so one ingest batch costs one INSERT ... SELECT here. An
-- update marks the old and the new key of a call whose figures can change.
CREATE FUNCTION callstore.calls_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO callstore.rollup_dirty (tenant_id, queue_id, started_at)
        SELECT n.tenant_id, n.queue_id, n.started_at FROM new_calls n
        WHERE n.direction = 'inbound' AND n.started_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO callstore.rollup_dirty (tenant_id, queue_id, started_at)
        SELECT o.tenant_id, o.queue_id, o.started_at FROM old_calls o
        WHERE o.direction = 'inbound' AND o.started_at IS NOT NULL;
    ELSE
        INSERT INTO callstore.rollup_dirty (tenant_id, queue_id, started_at)
        SELECT o.tenant_id, o.queue_id, o.started_at FROM old_calls o
        WHERE o.direction = 'inbound' AND o.started_at IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM new_calls n
              WHERE n.tenant_id = o.tenant_id AND n.call_id = o.call_id
                AND (n.direction, n.call_status, n.started_at, n.answered_at, n.ended_at, n.hangup_by, n.queue_id)
                    IS NOT DISTINCT FROM
                    (o.direction, o.call_status, o.started_at, o.answered_at, o.ended_at, o.hangup_by, o.queue_id))
        UNION
        SELECT n.tenant_id, n.queue_id, n.started_at FROM new_calls n
        WHERE n.direction = 'inbound' AND n.started_at IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM old_calls o
              WHERE n.tenant_id = o.tenant_id AND n.call_id = o.call_id
                AND (n.direction, n.call_status, n.started_at, n.answered_at, n.ended_at, n.hangup_by, n.queue_id)
                    IS NOT DISTINCT FROM
                    (o.direction, o.call_status, o.started_at, o.answered_at, o.ended_at, o.hangup_by, o.queue_id));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_rollup_insert AFTER INSERT ON callstore.calls
    REFERENCING NEW TABLE AS new_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_dirty();
CREATE TRIGGER calls_rollup_update AFTER UPDATE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_dirty();
CREATE TRIGGER calls_rollup_delete AFTER DELETE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_dirty();

-- queue_key: the queue_id, or -1 for the unassigned queue (a primary key
-- column cannot be NULL, and equality joins must use the index).
{_rollup_table("queue_rollup_15m")};
{_rollup_table("queue_rollup_hourly")};
{_rollup_table("queue_rollup_daily")};

-- A tenant's zone moves every bucket: drop its rollups and mark all its calls.
CREATE FUNCTION callstore.tenant_zone_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS DISTINCT FROM OLD.timezone THEN
        DELETE FROM callstore.queue_rollup_15m WHERE tenant_id = NEW.tenant_id;
        DELETE FROM callstore.queue_rollup_hourly WHERE tenant_id = NEW.tenant_id;
        DELETE FROM callstore.queue_rollup_daily WHERE tenant_id = NEW.tenant_id;
        INSERT INTO callstore.rollup_dirty (tenant_id, queue_id, started_at)
        SELECT tenant_id, queue_id, started_at FROM callstore.calls
        WHERE tenant_id = NEW.tenant_id AND direction = 'inbound' AND started_at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_zone_changed AFTER UPDATE OF timezone ON callstore.tenants
    FOR EACH ROW EXECUTE FUNCTION callstore.tenant_zone_changed();

{_stats_view("queue_stats_15m", "queue_rollup_15m")};
{_stats_view("queue_stats_hourly", "queue_rollup_hourly")};
{_stats_view("queue_stats_daily", "queue_rollup_daily")};

-- Per agent and local day, computed on read from analytics.calls.
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

DOWNGRADE = """
DROP VIEW IF EXISTS analytics.agent_daily;
DROP VIEW IF EXISTS analytics.queue_stats_daily;
DROP VIEW IF EXISTS analytics.queue_stats_hourly;
DROP VIEW IF EXISTS analytics.queue_stats_15m;
DROP TRIGGER IF EXISTS tenants_zone_changed ON callstore.tenants;
DROP FUNCTION IF EXISTS callstore.tenant_zone_changed();
DROP TABLE IF EXISTS callstore.queue_rollup_daily;
DROP TABLE IF EXISTS callstore.queue_rollup_hourly;
DROP TABLE IF EXISTS callstore.queue_rollup_15m;
DROP TRIGGER IF EXISTS calls_rollup_delete ON callstore.calls;
DROP TRIGGER IF EXISTS calls_rollup_update ON callstore.calls;
DROP TRIGGER IF EXISTS calls_rollup_insert ON callstore.calls;
DROP FUNCTION IF EXISTS callstore.calls_mark_dirty();
DROP TABLE IF EXISTS callstore.queue_thresholds;
DROP FUNCTION IF EXISTS callstore.queue_thresholds_changed();
DROP TABLE IF EXISTS callstore.rollup_dirty;
DROP FUNCTION IF EXISTS callstore.compile_thresholds();
DROP FUNCTION IF EXISTS callstore.next_day(timestamptz, text);
DROP FUNCTION IF EXISTS callstore.bucket_day(timestamptz, text);
DROP FUNCTION IF EXISTS callstore.bucket_hour(timestamptz, text);
DROP FUNCTION IF EXISTS callstore.bucket_15m(timestamptz, text);
CREATE OR REPLACE FUNCTION callstore.sla_seconds(p_tenant text, p_queue_id bigint, p_started_at timestamptz)
RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 20 $$;
CREATE OR REPLACE FUNCTION callstore.short_abandon_seconds(p_tenant text, p_queue_id bigint, p_started_at timestamptz)
RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 5 $$;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
