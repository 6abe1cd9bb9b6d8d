"""Sync: backfill runs, the reconciliation ledger, sync cursors, analytics.ingest_ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


UPGRADE = r"""
-- One row per backfill run (scheduled job or `callstore backfill`).
CREATE TABLE callstore.ingest_runs (
    run_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    source         text NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    -- End of the part of the window fully written so far (start of the window: nothing yet).
    covered_until  timestamptz NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    pages          integer NOT NULL DEFAULT 0,
    records        integer NOT NULL DEFAULT 0,
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'ok', 'failed', 'interrupted', 'abandoned')),
    error          text
);
CREATE INDEX ingest_runs_tenant_started ON callstore.ingest_runs (tenant_id, started_at);

-- What each run reconciled, per local day (tenant zone) of the calls' start.
CREATE TABLE callstore.ingest_ledger (
    run_id          bigint NOT NULL,  -- callstore.ingest_runs.run_id
    tenant_id       text NOT NULL,
    day             date NOT NULL,
    records         integer NOT NULL DEFAULT 0,
    first_seen      integer NOT NULL DEFAULT 0,
    changed         integer NOT NULL DEFAULT 0,
    changed_fields  jsonb NOT NULL DEFAULT '{}',
    webhook_only    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, day)
);

-- How far a scheduled sync has covered; only moves forward, written in the
-- transaction that writes the data it covers.
CREATE TABLE callstore.sync_cursors (
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    position    timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE VIEW analytics.ingest_ledger AS
SELECT
    l.run_id,
    l.tenant_id,
    r.kind AS run_kind,
    r.source,
    r.window_start,
    r.window_end,
    r.started_at AS run_started_at,
    r.finished_at AS run_finished_at,
    r.status AS run_status,
    l.day,
    l.records AS history_records,
    l.first_seen AS first_seen_by_backfill,
    l.changed AS changed_by_backfill,
    l.changed_fields,
    l.webhook_only AS seen_only_by_webhook
FROM callstore.ingest_ledger l
JOIN callstore.ingest_runs r ON r.run_id = l.run_id;
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS analytics.ingest_ledger;
DROP TABLE IF EXISTS callstore.sync_cursors;
DROP TABLE IF EXISTS callstore.ingest_ledger;
DROP TABLE IF EXISTS callstore.ingest_runs;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
