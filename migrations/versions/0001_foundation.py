"""Foundation: tenants, raw events, calls, dead letters, queues, API tokens, analytics.calls.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE SCHEMA IF NOT EXISTS callstore;
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE callstore.tenants (
    tenant_id   text PRIMARY KEY,
    timezone    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every delivery, append-only; a repeated identical payload counts deliveries.
CREATE TABLE callstore.raw_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL,
    call_id          text NOT NULL,
    source           text NOT NULL CHECK (source IN ('webhook', 'history')),
    body_sha256      bytea NOT NULL,
    payload          jsonb NOT NULL,
    flags            text[] NOT NULL DEFAULT '{}',
    deliveries       integer NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL DEFAULT now(),
    last_received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT raw_events_delivery_key UNIQUE (tenant_id, call_id, source, body_sha256)
);
CREATE INDEX raw_events_received_at ON callstore.raw_events (received_at);

-- One row per call: the merge (store/merge.py) of its raw events.
CREATE TABLE callstore.calls (
    tenant_id           text NOT NULL,
    call_id             text NOT NULL,
    direction           text,
    call_status         text,
    hotline             text,
    caller_number       text,
    destination_number  text,
    agent               text,
    transaction_id      text,
    started_at          timestamptz,
    answered_at         timestamptz,
    ended_at            timestamptz,
    hangup_by           text,
    total_seconds       integer,
    hold_seconds        integer,
    recording_url       text,
    history_source      text,
    object_id           integer,
    event_type          text,
    queue_id            bigint,
    -- Rank (lifecycle * 2 + source) of each merged field's value, in the order
    -- of store.merge.FIELDS; -1 when absent. Lets later events merge in SQL.
    merge_ranks         smallint[] NOT NULL DEFAULT '{}',
    flagged             boolean NOT NULL DEFAULT false,
    seen_webhook        boolean NOT NULL DEFAULT false,
    seen_history        boolean NOT NULL DEFAULT false,
    first_source        text NOT NULL CHECK (first_source IN ('webhook', 'history')),
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX calls_started_at ON callstore.calls (tenant_id, started_at);
CREATE INDEX calls_queue_started ON callstore.calls (tenant_id, queue_id, started_at);
CREATE INDEX calls_caller_number ON callstore.calls (tenant_id, caller_number);
CREATE INDEX calls_transaction_id ON callstore.calls (tenant_id, transaction_id);
CREATE INDEX calls_agent ON callstore.calls (tenant_id, agent);
CREATE INDEX calls_updated_at ON callstore.calls (updated_at);

CREATE TABLE callstore.dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    tenant_id     text,
    reason        text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    content_type  text,
    remote_addr   text,
    body          bytea NOT NULL,
    body_bytes    integer NOT NULL
);
CREATE INDEX dead_letters_received_at ON callstore.dead_letters (received_at);

-- The inbound-queue catalogue (GET /v1/queues/inbound); queue_id = callinId.
CREATE TABLE callstore.queues (
    tenant_id                text NOT NULL,
    queue_id                 bigint NOT NULL,
    name                     text,
    callin_number            text,
    callin_number_canonical  text,
    strategy                 integer,
    time_wait_seconds        integer,
    raw                      jsonb NOT NULL DEFAULT '{}',
    synced_at                timestamptz NOT NULL DEFAULT now(),
    removed_at               timestamptz,
    PRIMARY KEY (tenant_id, queue_id)
);
CREATE INDEX queues_callin_number ON callstore.queues (tenant_id, callin_number_canonical);

-- Hotlines that Alohub does not list on any queue, mapped by hand.
CREATE TABLE callstore.queue_mappings (
    tenant_id   text NOT NULL,
    hotline     text NOT NULL,
    queue_id    bigint NOT NULL,
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, hotline)
);

CREATE TABLE callstore.api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('reader', 'compliance', 'admin')),
    token_hash    text NOT NULL UNIQUE,
    token_prefix  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Queue attribution (only inbound calls belong to queues), defined once: the catalogue's callinNumber,
-- else the manual mapping, else NULL (= unassigned). Only inbound calls.
CREATE FUNCTION callstore.attribute_queue(p_tenant text, p_direction text, p_hotline text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_direction = 'inbound' AND p_hotline IS NOT NULL THEN
        COALESCE(
            (SELECT min(q.queue_id) FROM callstore.queues q
              WHERE q.tenant_id = p_tenant AND q.callin_number_canonical = p_hotline
                AND q.removed_at IS NULL),
            (SELECT m.queue_id FROM callstore.queue_mappings m
              WHERE m.tenant_id = p_tenant AND m.hotline = p_hotline))
    END
$$;

-- Metric building blocks (docs/metrics.md), defined once and used by analytics.calls
-- and the rollups. Whole seconds; NULL when not defined.
CREATE FUNCTION callstore.is_answered(p_answered_at timestamptz, p_call_status text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_answered_at IS NOT NULL OR lower(coalesce(p_call_status, '')) = 'answered'
$$;

CREATE FUNCTION callstore.wait_seconds(
    p_started_at timestamptz, p_answered_at timestamptz, p_ended_at timestamptz, p_call_status text)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN callstore.is_answered(p_answered_at, p_call_status)
            THEN floor(extract(epoch FROM p_answered_at - p_started_at))::integer
        WHEN p_ended_at IS NOT NULL
            THEN floor(extract(epoch FROM p_ended_at - p_started_at))::integer
    END
$$;

-- Per-queue thresholds (SLA 20 s, short abandon 5 s by default). The defaults here; the reports migration
-- replaces these with the versioned per-queue thresholds.
CREATE FUNCTION callstore.sla_seconds(p_tenant text, p_queue_id bigint, p_started_at timestamptz)
RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 20 $$;

CREATE FUNCTION callstore.short_abandon_seconds(p_tenant text, p_queue_id bigint, p_started_at timestamptz)
RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 5 $$;

-- Recording state of a call as analytics.calls shows it; the recordings
-- migration replaces it with the archive's state.
CREATE FUNCTION callstore.recording_status(p_tenant text, p_call_id text, p_recording_url text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_recording_url IS NULL THEN 'none' ELSE 'pending' END
$$;

CREATE FUNCTION callstore.call_outcome(
    p_direction text, p_answered_at timestamptz, p_ended_at timestamptz, p_call_status text,
    p_hangup_by text, p_wait_seconds integer, p_short_abandon_seconds integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN callstore.is_answered(p_answered_at, p_call_status) THEN 'answered'
        WHEN p_ended_at IS NULL THEN 'in_progress'
        WHEN p_direction = 'inbound' AND p_hangup_by = 'customer' THEN
            CASE WHEN p_wait_seconds < p_short_abandon_seconds THEN 'short_abandoned' ELSE 'abandoned' END
        ELSE 'unanswered_other'
    END
$$;

CREATE VIEW analytics.calls AS
SELECT
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
    c.updated_at
FROM callstore.calls c
LEFT JOIN callstore.queues q ON q.tenant_id = c.tenant_id AND q.queue_id = c.queue_id
CROSS JOIN LATERAL (SELECT callstore.wait_seconds(c.started_at, c.answered_at, c.ended_at, c.call_status) AS wait_seconds) w
CROSS JOIN LATERAL (SELECT callstore.sla_seconds(c.tenant_id, c.queue_id, c.started_at) AS sla_seconds,
                           callstore.short_abandon_seconds(c.tenant_id, c.queue_id, c.started_at) AS short_abandon_seconds) t
CROSS JOIN LATERAL (SELECT callstore.call_outcome(c.direction, c.answered_at, c.ended_at, c.call_status,
                                                  c.hangup_by, w.wait_seconds, t.short_abandon_seconds) AS outcome) o;

CREATE VIEW analytics.dead_letters AS
SELECT id, received_at, tenant_id, reason, detail, content_type, body_bytes
FROM callstore.dead_letters;
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS analytics.dead_letters;
DROP VIEW IF EXISTS analytics.calls;
DROP FUNCTION IF EXISTS callstore.call_outcome(text, timestamptz, timestamptz, text, text, integer, integer);
DROP FUNCTION IF EXISTS callstore.recording_status(text, text, text);
DROP FUNCTION IF EXISTS callstore.short_abandon_seconds(text, bigint, timestamptz);
DROP FUNCTION IF EXISTS callstore.sla_seconds(text, bigint, timestamptz);
DROP FUNCTION IF EXISTS callstore.wait_seconds(timestamptz, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS callstore.is_answered(timestamptz, text);
DROP FUNCTION IF EXISTS callstore.attribute_queue(text, text, text);
DROP TABLE IF EXISTS callstore.api_tokens;
DROP TABLE IF EXISTS callstore.queue_mappings;
DROP TABLE IF EXISTS callstore.queues;
DROP TABLE IF EXISTS callstore.dead_letters;
DROP TABLE IF EXISTS callstore.calls;
DROP TABLE IF EXISTS callstore.raw_events;
DROP TABLE IF EXISTS callstore.tenants;
DROP SCHEMA IF EXISTS analytics;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
