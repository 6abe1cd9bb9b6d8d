"""Nothing lost: how far each local spool segment has been drained.

The drainer commits a segment's progress in the same transaction as the
events it moved into Postgres, so a crash between that commit and the
deletion of the segment file re-reads the file but ingests nothing twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE TABLE callstore.spool_progress (
    segment      text PRIMARY KEY,
    records_done integer NOT NULL CHECK (records_done >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE callstore.spool_progress;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
