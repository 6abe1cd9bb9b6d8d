"""Alerts: abandoned-call spike rules, per-queue state, history, notification outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from migrations.script import run

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


UPGRADE = r"""
-- Alert rules. One row per tenant (scope 'tenant', every value set) and
-- optional per-queue overrides (scope 'queue'; queue_id NULL = the unassigned
-- queue; a NULL value inherits the tenant row). reports/alerts/rules.py holds
-- the defaults the tenant row is created with; docs/alerts.md says why.
CREATE TABLE callstore.alert_rules (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            text NOT NULL,
    scope                text NOT NULL CHECK (scope IN ('tenant', 'queue')),
    queue_id             bigint,
    enabled              boolean,
    window_minutes       integer CHECK (window_minutes BETWEEN 1 AND 240),
    min_offered          integer CHECK (min_offered >= 1),
    min_abandoned        integer CHECK (min_abandoned >= 1),
    floor_rate           double precision CHECK (floor_rate >= 0 AND floor_rate < 1),
    clear_rate           double precision CHECK (clear_rate >= 0 AND clear_rate < 1),
    confidence           double precision CHECK (confidence >= 0.5 AND confidence < 1),
    baseline_weeks       integer CHECK (baseline_weeks BETWEEN 0 AND 12),
    min_baseline_calls   integer CHECK (min_baseline_calls >= 1),
    pending_evaluations  integer CHECK (pending_evaluations BETWEEN 1 AND 60),
    clear_evaluations    integer CHECK (clear_evaluations BETWEEN 1 AND 60),
    cooldown_minutes     integer CHECK (cooldown_minutes BETWEEN 0 AND 1440),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_scope CHECK (scope = 'queue' OR queue_id IS NULL),
    CONSTRAINT alert_rules_tenant_complete CHECK (scope = 'queue' OR num_nulls(
        enabled, window_minutes, min_offered, min_abandoned, floor_rate, clear_rate, confidence,
        baseline_weeks, min_baseline_calls, pending_evaluations, clear_evaluations, cooldown_minutes) = 0)
);
CREATE UNIQUE INDEX alert_rules_tenant ON callstore.alert_rules (tenant_id) WHERE scope = 'tenant';
CREATE UNIQUE INDEX alert_rules_queue ON callstore.alert_rules (tenant_id, queue_id)
    WHERE scope = 'queue' AND queue_id IS NOT NULL;
CREATE UNIQUE INDEX alert_rules_unassigned ON callstore.alert_rules (tenant_id)
    WHERE scope = 'queue' AND queue_id IS NULL;

-- One row per alert, from firing to resolved; figures as they were when it fired.
CREATE TABLE callstore.alerts (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             text NOT NULL,
    queue_id              bigint,
    fired_at              timestamptz NOT NULL,
    resolved_at           timestamptz,
    window_minutes        integer NOT NULL,
    offered               integer NOT NULL,
    answered              integer NOT NULL,
    abandoned             integer NOT NULL,
    short_abandoned       integer NOT NULL,
    unanswered_other      integer NOT NULL,
    abandon_rate          double precision,
    rate_lower_bound      double precision,
    baseline_rate         double precision,
    baseline_upper_bound  double precision,
    baseline_calls        integer,
    peak_abandon_rate     double precision,
    resolve_abandon_rate  double precision,
    rule                  jsonb NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_fired_at ON callstore.alerts (tenant_id, fired_at);

-- The state machine of each (tenant, queue) that has been evaluated
-- (reports/alerts/evaluate.py), with the figures of its last evaluation.
CREATE TABLE callstore.alert_states (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             text NOT NULL,
    queue_id              bigint,
    state                 text NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'resolving', 'resolved')),
    streak                integer NOT NULL DEFAULT 0,
    since                 timestamptz,
    fired_at              timestamptz,
    resolved_at           timestamptz,
    alert_id              bigint,
    evaluated_at          timestamptz NOT NULL,
    window_minutes        integer NOT NULL,
    offered               integer NOT NULL DEFAULT 0,
    abandoned             integer NOT NULL DEFAULT 0,
    short_abandoned       integer NOT NULL DEFAULT 0,
    handled               integer NOT NULL DEFAULT 0,
    abandon_rate          double precision,
    rate_lower_bound      double precision,
    baseline_rate         double precision,
    baseline_upper_bound  double precision,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alert_states_queue ON callstore.alert_states (tenant_id, queue_id) WHERE queue_id IS NOT NULL;
CREATE UNIQUE INDEX alert_states_unassigned ON callstore.alert_states (tenant_id) WHERE queue_id IS NULL;

-- Last evaluation time per tenant: evaluations are once per minute, never twice.
CREATE TABLE callstore.alert_cursors (
    tenant_id     text PRIMARY KEY,
    evaluated_at  timestamptz NOT NULL
);

-- Notifications, written in the transaction that changes the state, sent
-- (and retried) afterwards: a crash in between delays a message, never loses it.
CREATE TABLE callstore.alert_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL,
    alert_id         bigint,
    kind             text NOT NULL CHECK (kind IN ('firing', 'resolved')),
    notifier         text NOT NULL CHECK (notifier IN ('webhook', 'slack')),
    message_id       text NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    failed_at        timestamptz,
    last_error       text
);
CREATE INDEX alert_outbox_due ON callstore.alert_outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX alert_outbox_alert ON callstore.alert_outbox (alert_id);

-- Every failed delivery attempt (after the in-call retries), for operators.
CREATE TABLE callstore.alert_delivery_failures (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id     bigint NOT NULL,
    notifier      text NOT NULL,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    http_status   integer,
    error         text NOT NULL
);
CREATE INDEX alert_delivery_failures_outbox ON callstore.alert_delivery_failures (outbox_id);

CREATE VIEW analytics.alerts AS
SELECT
    a.id AS alert_id,
    a.tenant_id,
    a.queue_id,
    q.name AS queue_name,
    CASE WHEN a.resolved_at IS NULL THEN 'firing' ELSE 'resolved' END AS state,
    a.fired_at,
    a.resolved_at,
    floor(extract(epoch FROM a.resolved_at - a.fired_at))::integer AS duration_seconds,
    a.window_minutes,
    a.offered,
    a.answered,
    a.abandoned,
    a.short_abandoned,
    a.unanswered_other,
    a.abandon_rate,
    a.rate_lower_bound,
    a.baseline_rate,
    a.baseline_upper_bound,
    a.baseline_calls,
    (a.rule ->> 'floor_rate')::double precision AS floor_rate,
    a.peak_abandon_rate,
    a.resolve_abandon_rate,
    n.fire_notification,
    n.resolve_notification
FROM callstore.alerts a
LEFT JOIN callstore.queues q ON q.tenant_id = a.tenant_id AND q.queue_id = a.queue_id
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN count(*) FILTER (WHERE o.kind = 'firing') = 0 THEN 'none'
             WHEN bool_or(o.failed_at IS NOT NULL) FILTER (WHERE o.kind = 'firing') THEN 'failed'
             WHEN bool_and(o.sent_at IS NOT NULL) FILTER (WHERE o.kind = 'firing') THEN 'sent'
             ELSE 'pending' END AS fire_notification,
        CASE WHEN a.resolved_at IS NULL THEN NULL
             WHEN count(*) FILTER (WHERE o.kind = 'resolved') = 0 THEN 'none'
             WHEN bool_or(o.failed_at IS NOT NULL) FILTER (WHERE o.kind = 'resolved') THEN 'failed'
             WHEN bool_and(o.sent_at IS NOT NULL) FILTER (WHERE o.kind = 'resolved') THEN 'sent'
             ELSE 'pending' END AS resolve_notification
    FROM callstore.alert_outbox o
    WHERE o.alert_id = a.id
) n;
"""

DOWNGRADE = r"""
DROP VIEW IF EXISTS analytics.alerts;
DROP TABLE IF EXISTS callstore.alert_delivery_failures;
DROP TABLE IF EXISTS callstore.alert_outbox;
DROP TABLE IF EXISTS callstore.alert_cursors;
DROP TABLE IF EXISTS callstore.alert_states;
DROP TABLE IF EXISTS callstore.alerts;
DROP TABLE IF EXISTS callstore.alert_rules;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
