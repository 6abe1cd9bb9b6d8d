"""Indexes for the two numbers a phone search matches besides the caller's.

A search by phone number (`/api/calls?phone=`, the console's call search)
matches the caller, the destination and the hotline; only the caller had an
index, so on 10M calls the search read every row (1.7-3.5 s). The hotline
index also serves queue re-attribution, which looks up the calls of the
hotlines whose queue changed.

Upgrading builds both on the whole calls table (about 15 s for 10M calls on
2 cores), during which writes to calls wait.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE INDEX calls_destination_number ON callstore.calls (tenant_id, destination_number);
CREATE INDEX calls_hotline ON callstore.calls (tenant_id, hotline);
"""

DOWNGRADE = r"""
DROP INDEX callstore.calls_hotline;
DROP INDEX callstore.calls_destination_number;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
