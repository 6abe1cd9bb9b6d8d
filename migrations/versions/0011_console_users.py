"""Console users, their sessions and login attempts; the audit names the user.

People log in to the web console as themselves: a user belongs to one tenant,
has one role (reader, compliance, admin) and a memory-hard password hash.
Sessions and login attempts live here, not in a process, so that every
replica sees the same logins, logouts and throttling.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE TABLE callstore.users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           text NOT NULL,
    -- stored lower-case: "Lan" and "lan" are one person
    username            text NOT NULL CHECK (username <> '' AND length(username) <= 128 AND username = lower(username)),
    role                text NOT NULL CHECK (role IN ('reader', 'compliance', 'admin')),
    -- scrypt$N$r$p$salt$hash (base64): see store/users.py
    password_hash       text NOT NULL,
    disabled            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz
);
CREATE UNIQUE INDEX users_name ON callstore.users (tenant_id, username);
CREATE INDEX users_login ON callstore.users (username);

-- A session is a random id (only its SHA-256 is stored) with its CSRF token;
-- it ends at logout, when its user is disabled, or after 12 idle hours.
CREATE TABLE callstore.console_sessions (
    id_hash      text PRIMARY KEY,
    -- no foreign key: users are disabled, never deleted, and disabling deletes their sessions
    user_id      bigint NOT NULL,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_user ON callstore.console_sessions (user_id);

-- Failed and successful logins, for throttling per user name and per address.
CREATE TABLE callstore.console_logins (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    username    text NOT NULL,
    client_addr text,
    ok          boolean NOT NULL
);
CREATE INDEX console_logins_user ON callstore.console_logins (username, at);
CREATE INDEX console_logins_addr ON callstore.console_logins (client_addr, at);

-- Secrets the console generates once and every replica shares (the cookie signing key).
CREATE TABLE callstore.console_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Who played or downloaded a recording in the console (token_name stays for API tokens).
ALTER TABLE callstore.recording_access ADD COLUMN IF NOT EXISTS user_name text;
"""

DOWNGRADE = r"""
-- The token audit may add the same column and a view that reads it: then it is theirs to drop.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.view_column_usage
                   WHERE table_schema = 'callstore' AND table_name = 'recording_access'
                     AND column_name = 'user_name') THEN
        ALTER TABLE callstore.recording_access DROP COLUMN IF EXISTS user_name;
    END IF;
END
$$;
DROP TABLE callstore.console_secrets;
DROP TABLE callstore.console_logins;
DROP TABLE callstore.console_sessions;
DROP TABLE callstore.users;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
