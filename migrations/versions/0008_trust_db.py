"""Trust boundaries in the database: the BI role reads every view and cannot stall the service.

- callstore.job_leases: one row per scheduled job; a replica runs a job while
  it holds the row's unexpired lease (store/jobs.py). Replaces advisory locks,
  which any role can take, and so could stop every job.
- callstore.locks: rows the service locks FOR UPDATE to serialise the rollup
  refresh, the threshold recompilation and each tenant's alert evaluation
  (store/locks.py). Only the service may lock them (a row lock needs UPDATE).
- callstore.recording_status() runs with its owner's rights (SECURITY DEFINER,
  fixed search_path): analytics.calls calls it, and the BI role has no right
  on callstore.recordings.
- callstore.compile_thresholds() serialises on callstore.locks.
- EXECUTE on callstore's functions is revoked from PUBLIC (and for functions
  created later by the migrating role); roles that already read schema
  analytics get EXECUTE on the functions the views call. TEMP on the database
  is revoked from PUBLIC: the service does not use temporary tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The functions the analytics views call, as of this migration (reports/bi_role.py keeps the current list).
_VIEW_FUNCTIONS = (
    "callstore.is_answered(timestamptz, text)",
    "callstore.wait_seconds(timestamptz, timestamptz, timestamptz, text)",
    "callstore.call_outcome(text, timestamptz, timestamptz, text, text, integer, integer)",
    "callstore.sla_seconds(text, bigint, timestamptz)",
    "callstore.short_abandon_seconds(text, bigint, timestamptz)",
    "callstore.recording_status(text, text, text)",
    "callstore.bucket_day(timestamptz, text)",
)
_GRANT_EACH = "\n".join(
    f"        EXECUTE format('GRANT EXECUTE ON FUNCTION {f} TO %I', r.rolname);" for f in _VIEW_FUNCTIONS
)

UPGRADE = r"""
CREATE TABLE callstore.job_leases (
    name         text PRIMARY KEY,
    holder       text,
    acquired_at  timestamptz,
    expires_at   timestamptz NOT NULL DEFAULT '-infinity'
);

CREATE TABLE callstore.locks (
    name  text PRIMARY KEY
);
INSERT INTO callstore.locks (name) VALUES ('rollups'), ('thresholds');

-- Reads one row of callstore.recordings for the caller of analytics.calls,
-- who may have no right on that table. Fully qualified names, fixed
-- search_path: nothing the caller sets can redirect it.
CREATE OR REPLACE FUNCTION callstore.recording_status(p_tenant text, p_call_id text, p_recording_url text)
RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT r.status FROM callstore.recordings r WHERE r.tenant_id = p_tenant AND r.call_id = p_call_id),
        CASE WHEN p_recording_url IS NULL THEN 'none' ELSE 'pending' END)
$$;

CREATE OR REPLACE FUNCTION callstore.compile_thresholds() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g record;
    sla text := '';
    short text := '';
    queue_test text;
BEGIN
    -- Serialise recompilations (concurrent CREATE OR REPLACE of one function fails)
    -- on a row only the service may lock: an advisory lock could be taken by any role.
    PERFORM 1 FROM callstore.locks WHERE name = 'thresholds' FOR UPDATE;
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
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA callstore FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
"""

# Roles that read analytics before this migration (made by `report bi-role`)
# keep working: they get EXECUTE on what the views call.
UPGRADE_GRANTS = f"""
DO $$
DECLARE
    r record;
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname <> current_user AND rolname NOT LIKE 'pg\\_%'
               AND has_schema_privilege(oid, 'analytics', 'USAGE')
    LOOP
{_GRANT_EACH}
    END LOOP;
END
$$;
"""

DOWNGRADE = r"""
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA callstore TO PUBLIC;
CREATE OR REPLACE FUNCTION callstore.compile_thresholds() RETURNS void LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION callstore.recording_status(p_tenant text, p_call_id text, p_recording_url text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT r.status FROM callstore.recordings r WHERE r.tenant_id = p_tenant AND r.call_id = p_call_id),
        CASE WHEN p_recording_url IS NULL THEN 'none' ELSE 'pending' END)
$$;
DROP TABLE callstore.locks;
DROP TABLE callstore.job_leases;
"""


def upgrade() -> None:
    run(UPGRADE)
    run(UPGRADE_GRANTS)


def downgrade() -> None:
    run(DOWNGRADE)
