"""Tenant-first keys: every table that holds a tenant's data has tenant_id, NOT
NULL, first in its primary key, so the schema can be spread over several
servers by tenant (docs/scale.md).

- alert_rules, alerts, alert_states, alert_outbox, queue_thresholds:
  primary key (tenant_id, id) instead of (id); the identity columns stay.
- alert_delivery_failures gains tenant_id, filled from its outbox row (''
  for a failure whose outbox row is gone), and the key (tenant_id, id).
- ingest_runs: (tenant_id, run_id); ingest_ledger: (tenant_id, run_id, day).
- dead_letters and recording_access: a row that named no known tenant had
  tenant_id NULL; it is now '' (no tenant id is empty), and the analytics
  views show NULL for it as before. recording_access's index (tenant_id, id)
  is its primary key now.
- analytics.alerts and analytics.ingest_ledger join on tenant_id too.

Each key is rebuilt under an exclusive lock on its table; every one of these
tables is small next to calls and raw_events, which are not touched here.
Downgrading restores the old keys, NULL tenants and views; no row is lost.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: Tables whose primary key was (id) and becomes (tenant_id, id).
_BY_ID = ("alert_rules", "alerts", "alert_states", "alert_outbox", "queue_thresholds")


def _alerts_view(scoped: bool) -> str:
    """analytics.alerts as migration 0005 created it; `scoped` adds tenant_id to the outbox join."""
    outbox_match = "o.tenant_id = a.tenant_id AND o.alert_id = a.id" if scoped else "o.alert_id = a.id"
    return f"""
CREATE OR REPLACE VIEW analytics.alerts AS
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
    WHERE {outbox_match}
) n"""


def _ledger_view(scoped: bool) -> str:
    """analytics.ingest_ledger as migration 0002 created it; `scoped` adds tenant_id to the run join."""
    run_match = "r.tenant_id = l.tenant_id AND r.run_id = l.run_id" if scoped else "r.run_id = l.run_id"
    return f"""
CREATE OR REPLACE VIEW analytics.ingest_ledger AS
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
JOIN callstore.ingest_runs r ON {run_match}"""


def _tenant_column(scoped: bool) -> str:
    """How the two audit views show a row without a tenant: NULL, stored as '' once keys are tenant-first."""
    return "NULLIF(tenant_id, '') AS tenant_id" if scoped else "tenant_id"


def _dead_letters_view(scoped: bool) -> str:
    return f"""
CREATE OR REPLACE VIEW analytics.dead_letters AS
SELECT id, received_at, {_tenant_column(scoped)}, reason, detail, content_type, body_bytes
FROM callstore.dead_letters"""


def _recording_access_view(scoped: bool) -> str:
    return f"""
CREATE OR REPLACE VIEW analytics.recording_access AS
SELECT id, accessed_at, token_id, token_name, {_tenant_column(scoped)}, call_id, client_addr, method, range_header,
       status_code, first_byte, last_byte, bytes_planned, bytes_sent, complete, sha256, user_name
FROM callstore.recording_access"""


def _rekey(table: str, columns: str) -> str:
    return (f"ALTER TABLE callstore.{table} DROP CONSTRAINT {table}_pkey, "
            f"ADD CONSTRAINT {table}_pkey PRIMARY KEY ({columns})")


UPGRADE = ";\n".join([
    *(_rekey(t, "tenant_id, id") for t in _BY_ID),
    "ALTER TABLE callstore.alert_delivery_failures ADD COLUMN tenant_id text",
    """UPDATE callstore.alert_delivery_failures f
       SET tenant_id = coalesce((SELECT o.tenant_id FROM callstore.alert_outbox o WHERE o.id = f.outbox_id), '')""",
    "ALTER TABLE callstore.alert_delivery_failures ALTER COLUMN tenant_id SET NOT NULL",
    _rekey("alert_delivery_failures", "tenant_id, id"),
    _rekey("ingest_runs", "tenant_id, run_id"),
    _rekey("ingest_ledger", "tenant_id, run_id, day"),
    "UPDATE callstore.dead_letters SET tenant_id = '' WHERE tenant_id IS NULL",
    "ALTER TABLE callstore.dead_letters ALTER COLUMN tenant_id SET NOT NULL",
    _rekey("dead_letters", "tenant_id, id"),
    "UPDATE callstore.recording_access SET tenant_id = '' WHERE tenant_id IS NULL",
    "ALTER TABLE callstore.recording_access ALTER COLUMN tenant_id SET NOT NULL",
    _rekey("recording_access", "tenant_id, id"),
    "DROP INDEX callstore.recording_access_tenant",
    _alerts_view(scoped=True),
    _ledger_view(scoped=True),
    _dead_letters_view(scoped=True),
    _recording_access_view(scoped=True),
])

DOWNGRADE = ";\n".join([
    _recording_access_view(scoped=False),
    _dead_letters_view(scoped=False),
    _ledger_view(scoped=False),
    _alerts_view(scoped=False),
    "CREATE INDEX recording_access_tenant ON callstore.recording_access (tenant_id, id)",
    _rekey("recording_access", "id"),
    "ALTER TABLE callstore.recording_access ALTER COLUMN tenant_id DROP NOT NULL",
    "UPDATE callstore.recording_access SET tenant_id = NULL WHERE tenant_id = ''",
    _rekey("dead_letters", "id"),
    "ALTER TABLE callstore.dead_letters ALTER COLUMN tenant_id DROP NOT NULL",
    "UPDATE callstore.dead_letters SET tenant_id = NULL WHERE tenant_id = ''",
    _rekey("ingest_ledger", "run_id, day"),
    _rekey("ingest_runs", "run_id"),
    _rekey("alert_delivery_failures", "id"),
    "ALTER TABLE callstore.alert_delivery_failures DROP COLUMN tenant_id",
    *(_rekey(t, "id") for t in reversed(_BY_ID)),
])


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
