"""Recording archive: download state per call, access audit, analytics views.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


UPGRADE = r"""
-- One row per call whose recording the archive is responsible for
-- (sync/recordings.py). Retries keep the row 'pending' with attempts and
-- last_error; 'failed' and 'expired' are final, 'purged' keeps the hash.
CREATE TABLE callstore.recordings (
    tenant_id        text NOT NULL,
    call_id          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'stored', 'failed', 'expired', 'purged')),
    call_started_at  timestamptz,
    url              text,
    sha256           text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size             bigint,
    content_type     text,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    storage_key      text,
    stored_at        timestamptz,
    purged_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX recordings_due ON callstore.recordings (status, next_attempt_at);
CREATE INDEX recordings_started ON callstore.recordings (status, call_started_at);

-- How far the enqueuer has read callstore.calls by updated_at, so that each
-- run reads only recently changed calls instead of the whole table.
CREATE TABLE callstore.recording_scan (
    name          text PRIMARY KEY,
    scanned_until timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every access to a recording's bytes (GET /api/recordings/{call_id}).
CREATE TABLE callstore.recording_access (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    accessed_at   timestamptz NOT NULL DEFAULT now(),
    token_id      bigint,
    token_name    text,
    tenant_id     text NOT NULL,
    call_id       text NOT NULL,
    client_addr   text,
    method        text NOT NULL,
    range_header  text,
    status_code   integer NOT NULL,
    first_byte    bigint,
    last_byte     bigint,
    bytes_planned bigint NOT NULL,
    bytes_sent    bigint NOT NULL,
    complete      boolean NOT NULL,
    sha256        text
);
CREATE INDEX recording_access_call ON callstore.recording_access (tenant_id, call_id, accessed_at);
CREATE INDEX recording_access_time ON callstore.recording_access (accessed_at);

CREATE OR REPLACE FUNCTION callstore.recording_status(p_tenant text, p_call_id text, p_recording_url text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT r.status FROM callstore.recordings r WHERE r.tenant_id = p_tenant AND r.call_id = p_call_id),
        CASE WHEN p_recording_url IS NULL THEN 'none' ELSE 'pending' END)
$$;

CREATE VIEW analytics.recordings AS
SELECT
    r.tenant_id,
    r.call_id,
    r.status,
    r.sha256,
    r.size,
    r.attempts,
    r.last_error,
    r.stored_at,
    r.purged_at,
    r.last_attempt_at,
    CASE WHEN r.status = 'pending' THEN r.next_attempt_at END AS next_attempt_at,
    r.call_started_at,
    r.storage_key,
    r.created_at,
    r.updated_at
FROM callstore.recordings r;

CREATE VIEW analytics.recording_access AS
SELECT id, accessed_at, token_id, token_name, tenant_id, call_id, client_addr, method, range_header,
       status_code, first_byte, last_byte, bytes_planned, bytes_sent, complete, sha256
FROM callstore.recording_access;
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS analytics.recording_access;
DROP VIEW IF EXISTS analytics.recordings;
CREATE OR REPLACE FUNCTION callstore.recording_status(p_tenant text, p_call_id text, p_recording_url text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_recording_url IS NULL THEN 'none' ELSE 'pending' END
$$;
DROP TABLE IF EXISTS callstore.recording_access;
DROP TABLE IF EXISTS callstore.recording_scan;
DROP TABLE IF EXISTS callstore.recordings;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
