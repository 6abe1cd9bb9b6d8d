"""Trust boundaries (HTTP side): tokens belong to a tenant, an audit that
records refusals and console users, an index for the call search's order.

Existing API tokens are migrated explicitly. The migration knows the tenants
from `callstore.tenants`, which every start fills with the configured ones:
- exactly one tenant recorded: every existing token belongs to it;
- several (or none): existing tokens keep `tenant_id` NULL and are refused
  ("re-issue this token") until replaced by `callstore tokens create --tenant`.
The migration says how many tokens need re-issuing; so do `tokens list` and
every start of `callstore serve`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import logging

from alembic import op
from sqlalchemy import text

from migrations.script import run

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

UPGRADE = r"""
-- The tenant a token may read. NULL with all_tenants: the operator's token
-- (admin only). NULL without all_tenants: a token from before tenants, refused
-- until re-issued.
ALTER TABLE callstore.api_tokens ADD COLUMN tenant_id text;
ALTER TABLE callstore.api_tokens ADD COLUMN all_tenants boolean NOT NULL DEFAULT false;
ALTER TABLE callstore.api_tokens ADD CONSTRAINT api_tokens_scope
    CHECK (NOT all_tenants OR (tenant_id IS NULL AND role = 'admin'));

UPDATE callstore.api_tokens
SET tenant_id = (SELECT min(tenant_id) FROM callstore.tenants)
WHERE tenant_id IS NULL AND NOT all_tenants AND (SELECT count(*) FROM callstore.tenants) = 1;

-- Refused requests are audited too; a request without a valid token may not
-- name a tenant that callstore knows: its row has no tenant.
ALTER TABLE callstore.recording_access ALTER COLUMN tenant_id DROP NOT NULL;
-- The console's signed-in user (API requests carry a token instead).
ALTER TABLE callstore.recording_access ADD COLUMN IF NOT EXISTS user_name text;
-- GET /api/audit/recordings: one tenant, newest first, keyset on id.
CREATE INDEX recording_access_tenant ON callstore.recording_access (tenant_id, id);

CREATE OR REPLACE VIEW analytics.recording_access AS
SELECT id, accessed_at, token_id, token_name, tenant_id, call_id, client_addr, method, range_header,
       status_code, first_byte, last_byte, bytes_planned, bytes_sent, complete, sha256, user_name
FROM callstore.recording_access;

-- The call search's order (newest first; no start time last), within a tenant.
CREATE INDEX calls_search_order ON callstore.calls
    (tenant_id, (coalesce(started_at, '-infinity'::timestamptz)), call_id);
"""

DOWNGRADE = r"""
DROP INDEX IF EXISTS callstore.calls_search_order;
DROP VIEW IF EXISTS analytics.recording_access;
CREATE VIEW analytics.recording_access AS
SELECT id, accessed_at, token_id, token_name, tenant_id, call_id, client_addr, method, range_header,
       status_code, first_byte, last_byte, bytes_planned, bytes_sent, complete, sha256
FROM callstore.recording_access;
DROP INDEX IF EXISTS callstore.recording_access_tenant;
ALTER TABLE callstore.recording_access DROP COLUMN IF EXISTS user_name;
-- Refusals without a tenant are kept, under the empty tenant id.
UPDATE callstore.recording_access SET tenant_id = '' WHERE tenant_id IS NULL;
ALTER TABLE callstore.recording_access ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE callstore.api_tokens DROP CONSTRAINT IF EXISTS api_tokens_scope;
ALTER TABLE callstore.api_tokens DROP COLUMN IF EXISTS all_tenants;
ALTER TABLE callstore.api_tokens DROP COLUMN IF EXISTS tenant_id;
"""


def upgrade() -> None:
    run(UPGRADE)
    unusable = op.get_bind().scalar(
        text("SELECT count(*) FROM callstore.api_tokens WHERE tenant_id IS NULL AND NOT all_tenants "
             "AND revoked_at IS NULL"))
    if unusable:
        log.warning("%d API token(s) were created before tokens belonged to a tenant, and several tenants are "
                    "recorded: they are refused until re-issued with `callstore tokens create --tenant T` "
                    "(see `callstore tokens list`)", unusable)


def downgrade() -> None:
    run(DOWNGRADE)
