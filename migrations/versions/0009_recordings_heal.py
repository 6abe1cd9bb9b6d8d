"""Recordings that heal: short leases held by one run, the media settings a
recording failed under, and download outcomes counted for /metrics.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


UPGRADE = r"""
-- The run holding a pending row's lease (next_attempt_at is the lease's end
-- while it is set): only that run renews the lease, records the outcome or
-- releases the row.
ALTER TABLE callstore.recordings ADD COLUMN claimed_by text;
-- Digest of the tenant's media settings when the row became 'failed': a run
-- with other settings makes it due again.
ALTER TABLE callstore.recordings ADD COLUMN settings_fingerprint text;
CREATE INDEX recordings_claimed ON callstore.recordings (claimed_by);
-- Recordings that failed before this revision get one attempt under the
-- settings in force now (their fingerprint is unknown, so it differs).
UPDATE callstore.recordings SET settings_fingerprint = 'before-0009' WHERE status = 'failed';

-- Download attempts by outcome, for /metrics (shared by every replica).
CREATE TABLE callstore.recording_downloads (
    tenant_id  text NOT NULL,
    outcome    text NOT NULL,
    count      bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, outcome)
);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS callstore.recording_downloads;
DROP INDEX IF EXISTS callstore.recordings_claimed;
ALTER TABLE callstore.recordings DROP COLUMN IF EXISTS settings_fingerprint;
ALTER TABLE callstore.recordings DROP COLUMN IF EXISTS claimed_by;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
