"""Table definitions (SQLAlchemy Core) of schema `callstore`.

The migrations in `migrations/versions` create these; a test compares the two.
Views of schema `analytics` are the BI contract and are defined in migrations.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

SCHEMA = "callstore"
#: tenant_id of a row kept for a request that named no known tenant (an audit
#: row, a dead letter): no tenant id is empty, and tenant_id is part of keys.
NO_TENANT = ""
metadata = MetaData(schema=SCHEMA)
TZ = TIMESTAMP(timezone=True)
NOW = text("now()")

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("timezone", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    Column("bi_phone_numbers", Text, CheckConstraint("bi_phone_numbers IN ('masked', 'full', 'hidden')"),
           nullable=False, server_default=text("'masked'")),
    #: The oldest month of raw events kept (raw-event retention); NULL: all kept.
    Column("raw_floor", Date),
)

# Partitioned: LIST (tenant_id), then RANGE (raw_month) per tenant; the
# partitions live in schema callstore_raw (store/raw_partitions.py).
raw_events = Table(
    "raw_events",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("raw_month", Date, nullable=False),
    Column("deliveries", Integer, nullable=False, server_default=text("1")),
    Column("received_at", TZ, nullable=False, server_default=NOW),
    Column("last_received_at", TZ, nullable=False, server_default=NOW),
    Column("call_id", Text, nullable=False),
    Column("source", Text, CheckConstraint("source IN ('webhook', 'history')"), nullable=False),
    Column("body_sha256", LargeBinary, nullable=False),
    Column("flags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # The body exactly as received, packed by store/raw_body.py.
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("tenant_id", "call_id", "source", "body_sha256", "raw_month", name="raw_events_delivery_key"),
    postgresql_partition_by="LIST (tenant_id)",
)

calls = Table(
    "calls",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("direction", Text),
    Column("call_status", Text),
    Column("hotline", Text),
    Column("caller_number", Text),
    Column("destination_number", Text),
    Column("agent", Text),
    Column("transaction_id", Text),
    Column("started_at", TZ),
    Column("answered_at", TZ),
    Column("ended_at", TZ),
    Column("hangup_by", Text),
    Column("total_seconds", Integer),
    Column("hold_seconds", Integer),
    Column("recording_url", Text),
    Column("history_source", Text),
    Column("object_id", Integer),
    Column("event_type", Text),
    Column("queue_id", BigInteger),
    Column("merge_ranks", ARRAY(SmallInteger), nullable=False, server_default=text("'{}'")),
    Column("flagged", Boolean, nullable=False, server_default=text("false")),
    Column("seen_webhook", Boolean, nullable=False, server_default=text("false")),
    Column("seen_history", Boolean, nullable=False, server_default=text("false")),
    Column("first_source", Text, CheckConstraint("first_source IN ('webhook', 'history')"), nullable=False),
    Column("first_seen_at", TZ, nullable=False, server_default=NOW),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    #: The UTC month (its first day) in which the call's first raw event was
    #: stored: the partition of all its raw events. Set once, never changed.
    Column("raw_month", Date, nullable=False,
           server_default=text("(date_trunc('month', now() AT TIME ZONE 'UTC'))::date")),
    PrimaryKeyConstraint("tenant_id", "call_id"),
    # Why each index exists (the query that needs it) is in docs/operations.md
    # and tests/store/test_storage.py; no other index is wanted here: each one
    # costs bytes per call and work on every insert.
    Index("calls_started_at", "tenant_id", "started_at"),
    Index("calls_queue_started", "tenant_id", "queue_id", "started_at"),
    Index("calls_caller_number", "tenant_id", "caller_number"),
    Index("calls_destination_number", "tenant_id", "destination_number"),
    Index("calls_hotline", "tenant_id", "hotline"),
    # Every inbound call has no transaction id: only the calls that have one.
    Index("calls_transaction_id", "tenant_id", "transaction_id", postgresql_where=text("transaction_id IS NOT NULL")),
    # BRIN, not a B-tree: every merge sets updated_at, and a B-tree on it made
    # every merge a non-HOT update (a BRIN index does not, PostgreSQL 16+).
    Index("calls_updated_at", "updated_at", postgresql_using="brin", postgresql_with={"pages_per_range": 32}),
    # The call search's order within a tenant (store/calls_query.py).
    Index("calls_search_order", "tenant_id", text("coalesce(started_at, '-infinity'::timestamp with time zone)"),
          "call_id"),
    # Room on each page for the merges' new row versions (HOT updates).
    postgresql_with={"fillfactor": 85},
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("received_at", TZ, nullable=False, server_default=NOW),
    # Migration 0014: '' (no tenant id is empty) when the delivery named no tenant; readers show NULL.
    Column("tenant_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("content_type", Text),
    Column("remote_addr", Text),
    Column("body", LargeBinary, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("dead_letters_received_at", "received_at"),
)

queues = Table(
    "queues",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger, nullable=False),
    Column("name", Text),
    Column("callin_number", Text),
    Column("callin_number_canonical", Text),
    Column("strategy", Integer),
    Column("time_wait_seconds", Integer),
    Column("raw", JSONB, nullable=False, server_default=text("'{}'")),
    Column("synced_at", TZ, nullable=False, server_default=NOW),
    Column("removed_at", TZ),
    PrimaryKeyConstraint("tenant_id", "queue_id"),
    Index("queues_callin_number", "tenant_id", "callin_number_canonical"),
)

queue_mappings = Table(
    "queue_mappings",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("hotline", Text, nullable=False),
    Column("queue_id", BigInteger, nullable=False),
    Column("note", Text, nullable=False, server_default=text("''")),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "hotline"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, CheckConstraint("role IN ('reader', 'compliance', 'admin')"), nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("token_prefix", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("revoked_at", TZ),
    Column("last_used_at", TZ),
    # Migration 0007: the tenant the token reads; NULL with all_tenants for
    # the operator's admin token, NULL without it for a token to re-issue.
    Column("tenant_id", Text),
    Column("all_tenants", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("NOT all_tenants OR (tenant_id IS NULL AND role = 'admin')", name="api_tokens_scope"),
)


# --- alerts (migration 0005, reports/alerts) ---------------------------------

from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION  # noqa: E402

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("enabled", Boolean),
    Column("window_minutes", Integer),
    Column("min_offered", Integer),
    Column("min_abandoned", Integer),
    Column("floor_rate", DOUBLE_PRECISION),
    Column("clear_rate", DOUBLE_PRECISION),
    Column("confidence", DOUBLE_PRECISION),
    Column("baseline_weeks", Integer),
    Column("min_baseline_calls", Integer),
    Column("pending_evaluations", Integer),
    Column("clear_evaluations", Integer),
    Column("cooldown_minutes", Integer),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("alert_rules_tenant", "tenant_id", unique=True, postgresql_where=text("scope = 'tenant'")),
    Index("alert_rules_queue", "tenant_id", "queue_id", unique=True,
          postgresql_where=text("scope = 'queue' AND queue_id IS NOT NULL")),
    Index("alert_rules_unassigned", "tenant_id", unique=True,
          postgresql_where=text("scope = 'queue' AND queue_id IS NULL")),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("fired_at", TZ, nullable=False),
    Column("resolved_at", TZ),
    Column("window_minutes", Integer, nullable=False),
    Column("offered", Integer, nullable=False),
    Column("answered", Integer, nullable=False),
    Column("abandoned", Integer, nullable=False),
    Column("short_abandoned", Integer, nullable=False),
    Column("unanswered_other", Integer, nullable=False),
    Column("abandon_rate", DOUBLE_PRECISION),
    Column("rate_lower_bound", DOUBLE_PRECISION),
    Column("baseline_rate", DOUBLE_PRECISION),
    Column("baseline_upper_bound", DOUBLE_PRECISION),
    Column("baseline_calls", Integer),
    Column("peak_abandon_rate", DOUBLE_PRECISION),
    Column("resolve_abandon_rate", DOUBLE_PRECISION),
    Column("rule", JSONB, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("alerts_fired_at", "tenant_id", "fired_at"),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("state", Text, nullable=False),
    Column("streak", Integer, nullable=False, server_default=text("0")),
    Column("since", TZ),
    Column("fired_at", TZ),
    Column("resolved_at", TZ),
    Column("alert_id", BigInteger),
    Column("evaluated_at", TZ, nullable=False),
    Column("window_minutes", Integer, nullable=False),
    Column("offered", Integer, nullable=False, server_default=text("0")),
    Column("abandoned", Integer, nullable=False, server_default=text("0")),
    Column("short_abandoned", Integer, nullable=False, server_default=text("0")),
    Column("handled", Integer, nullable=False, server_default=text("0")),
    Column("abandon_rate", DOUBLE_PRECISION),
    Column("rate_lower_bound", DOUBLE_PRECISION),
    Column("baseline_rate", DOUBLE_PRECISION),
    Column("baseline_upper_bound", DOUBLE_PRECISION),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("alert_states_queue", "tenant_id", "queue_id", unique=True, postgresql_where=text("queue_id IS NOT NULL")),
    Index("alert_states_unassigned", "tenant_id", unique=True, postgresql_where=text("queue_id IS NULL")),
)

alert_cursors = Table(
    "alert_cursors",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("evaluated_at", TZ, nullable=False),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("alert_id", BigInteger),
    Column("kind", Text, nullable=False),
    Column("notifier", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TZ, nullable=False, server_default=NOW),
    Column("sent_at", TZ),
    Column("failed_at", TZ),
    Column("last_error", Text),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("alert_outbox_due", "next_attempt_at", postgresql_where=text("sent_at IS NULL AND failed_at IS NULL")),
    Index("alert_outbox_alert", "alert_id"),
)

alert_delivery_failures = Table(
    "alert_delivery_failures",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    # Migration 0014: the tenant of the outbox row.
    Column("tenant_id", Text, nullable=False),
    Column("outbox_id", BigInteger, nullable=False),
    Column("notifier", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", TZ, nullable=False, server_default=NOW),
    Column("http_status", Integer),
    Column("error", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("alert_delivery_failures_outbox", "outbox_id"),
)

# --- nothing_lost (migration 0006) --------------------------------------------

#: How many records of a local spool segment are committed (receiver/drain.py).
spool_progress = Table(
    "spool_progress",
    metadata,
    Column("segment", Text, primary_key=True),
    Column("records_done", Integer, CheckConstraint("records_done >= 0"), nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
)

# --- sync (migration 0002): backfill runs, reconciliation ledger, cursors ---

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("kind", Text, CheckConstraint("kind IN ('scheduled', 'manual')"), nullable=False),
    Column("source", Text, nullable=False),
    Column("window_start", TZ, nullable=False),
    Column("window_end", TZ, nullable=False),
    Column("covered_until", TZ, nullable=False),
    Column("started_at", TZ, nullable=False, server_default=NOW),
    Column("finished_at", TZ),
    Column("pages", Integer, nullable=False, server_default=text("0")),
    Column("records", Integer, nullable=False, server_default=text("0")),
    Column(
        "status", Text,
        CheckConstraint("status IN ('running', 'ok', 'failed', 'interrupted', 'abandoned')"),
        nullable=False, server_default=text("'running'"),
    ),
    Column("error", Text),
    PrimaryKeyConstraint("tenant_id", "run_id"),
    Index("ingest_runs_tenant_started", "tenant_id", "started_at"),
)

ingest_ledger = Table(
    "ingest_ledger",
    metadata,
    Column("run_id", BigInteger, nullable=False),  # callstore.ingest_runs.run_id
    Column("tenant_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("records", Integer, nullable=False, server_default=text("0")),
    Column("first_seen", Integer, nullable=False, server_default=text("0")),
    Column("changed", Integer, nullable=False, server_default=text("0")),
    Column("changed_fields", JSONB, nullable=False, server_default=text("'{}'")),
    Column("webhook_only", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("tenant_id", "run_id", "day"),
)

sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("position", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "name"),
)


# --- reports (migration 0003): thresholds, dirty keys, queue rollups --------

queue_thresholds = Table(
    "queue_thresholds",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("valid_from", TZ, nullable=False, server_default=text("'-infinity'")),
    Column("sla_seconds", Integer, CheckConstraint("sla_seconds >= 0"), nullable=False),
    Column("short_abandon_seconds", Integer, CheckConstraint("short_abandon_seconds >= 0"), nullable=False),
    Column("note", Text, nullable=False, server_default=text("''")),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("queue_thresholds_queue", "tenant_id", "queue_id", "valid_from"),
)

rollup_dirty = Table(
    "rollup_dirty",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("started_at", TZ, nullable=False),
    Column("queued_at", TZ, nullable=False, server_default=NOW),
)

#: Stored per bucket of the queue rollups (the views compute the ratios).
ROLLUP_COUNTS = (
    "offered", "answered", "abandoned", "short_abandoned", "unanswered_other", "in_progress",
    "answered_within_sla", "abandoned_within_sla", "wait_answered_count", "talk_count",
)
ROLLUP_SUMS = ("wait_answered_sum", "talk_sum")


def _queue_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("tenant_id", Text, nullable=False),
        Column("queue_key", BigInteger, nullable=False),
        Column("bucket_start", TZ, nullable=False),
        Column("bucket_local", TIMESTAMP(timezone=False), nullable=False),
        *(Column(c, Integer, nullable=False) for c in ROLLUP_COUNTS),
        *(Column(c, BigInteger, nullable=False) for c in ROLLUP_SUMS),
        Column("max_wait_seconds", Integer),
        Column("refreshed_at", TZ, nullable=False, server_default=NOW),
        PrimaryKeyConstraint("tenant_id", "queue_key", "bucket_start"),
        Index(f"{name}_bucket", "tenant_id", "bucket_start"),
    )


queue_rollup_15m = _queue_rollup("queue_rollup_15m")
queue_rollup_hourly = _queue_rollup("queue_rollup_hourly")
queue_rollup_daily = _queue_rollup("queue_rollup_daily")


# --- recordings (migration 0004) ---------------------------------------------

recordings = Table(
    "recordings",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column(
        "status",
        Text,
        CheckConstraint("status IN ('pending', 'stored', 'failed', 'expired', 'purged')"),
        nullable=False,
        server_default=text("'pending'"),
    ),
    Column("call_started_at", TZ),
    Column("url", Text),
    Column("sha256", Text, CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'")),
    Column("size", BigInteger),
    Column("content_type", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("last_attempt_at", TZ),
    Column("next_attempt_at", TZ, nullable=False, server_default=NOW),
    Column("storage_key", Text),
    Column("stored_at", TZ),
    Column("purged_at", TZ),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    # migration 0009: the run holding the lease; the media settings a row failed under
    Column("claimed_by", Text),
    Column("settings_fingerprint", Text),
    PrimaryKeyConstraint("tenant_id", "call_id"),
    Index("recordings_due", "status", "next_attempt_at"),
    Index("recordings_started", "status", "call_started_at"),
    Index("recordings_claimed", "claimed_by"),
)

recording_downloads = Table(
    "recording_downloads",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("count", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "outcome"),
)

recording_scan = Table(
    "recording_scan",
    metadata,
    Column("name", Text, primary_key=True),
    Column("scanned_until", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
)

recording_access = Table(
    "recording_access",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("accessed_at", TZ, nullable=False, server_default=NOW),
    Column("token_id", BigInteger),
    Column("token_name", Text),
    # '' (no tenant id is empty): a refused request that named no known tenant; readers show NULL.
    Column("tenant_id", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("client_addr", Text),
    Column("method", Text, nullable=False),
    Column("range_header", Text),
    Column("status_code", Integer, nullable=False),
    Column("first_byte", BigInteger),
    Column("last_byte", BigInteger),
    Column("bytes_planned", BigInteger, nullable=False),
    Column("bytes_sent", BigInteger, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("sha256", Text),
    Column("user_name", Text),
    # Also serves GET /api/audit/recordings: one tenant, newest first, keyset on id.
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("recording_access_call", "tenant_id", "call_id", "accessed_at"),
    Index("recording_access_time", "accessed_at"),
)

# --- coordination (migration 0008): rows only the service may lock ---

#: Who runs each scheduled job until when (store/jobs.py).
job_leases = Table(
    "job_leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text),
    Column("acquired_at", TZ),
    Column("expires_at", TZ, nullable=False, server_default=text("'-infinity'::timestamp with time zone")),
)

#: Serialisation points locked FOR UPDATE inside a transaction (store/locks.py).
locks = Table(
    "locks",
    metadata,
    Column("name", Text, primary_key=True),
)


# --- agent rollup (migration 0010) -------------------------------------------

agent_rollup_daily = Table(
    "agent_rollup_daily",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("day_start", TZ, nullable=False),
    Column("calls", Integer, nullable=False),
    Column("answered", Integer, nullable=False),
    Column("outbound", Integer, nullable=False),
    Column("talk_count", Integer, nullable=False),
    Column("talk_sum", BigInteger, nullable=False),
    Column("hold_sum", BigInteger, nullable=False),
    Column("refreshed_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "agent", "day"),
    Index("agent_rollup_daily_day", "tenant_id", "day"),
)

agent_dirty = Table(
    "agent_dirty",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("started_at", TZ, nullable=False),
    Column("queued_at", TZ, nullable=False, server_default=NOW),
)

# One agent-day's recompute reads only that agent's calls of that day.
Index("calls_agent_started", calls.c.tenant_id, calls.c.agent, calls.c.started_at,
      postgresql_where=calls.c.agent.isnot(None))
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("username", Text, CheckConstraint("username <> '' AND length(username) <= 128 AND username = lower(username)"),
           nullable=False),
    Column("role", Text, CheckConstraint("role IN ('reader', 'compliance', 'admin')"), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("password_changed_at", TZ, nullable=False, server_default=NOW),
    Column("last_login_at", TZ),
    Index("users_name", "tenant_id", "username", unique=True),
    Index("users_login", "username"),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
    Column("last_seen_at", TZ, nullable=False, server_default=NOW),
    Index("console_sessions_user", "user_id"),
)

console_logins = Table(
    "console_logins",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", TZ, nullable=False, server_default=NOW),
    Column("username", Text, nullable=False),
    Column("client_addr", Text),
    Column("ok", Boolean, nullable=False),
    Index("console_logins_user", "username", "at"),
    Index("console_logins_addr", "client_addr", "at"),
)

console_secrets = Table(
    "console_secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=NOW),
)

# -- outbound campaigns (sync/campaigns.py) -------------------------------------

campaigns = Table(
    "campaigns",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("name", Text),
    Column("added_by", Text, CheckConstraint("added_by IN ('cli', 'config')"), nullable=False),
    Column("added_at", TZ, nullable=False, server_default=NOW),
    Column("first_synced_at", TZ),
    Column("last_synced_at", TZ),
    Column("last_error", Text),
    Column("last_error_at", TZ),
    Column("removed_at", TZ),
    PrimaryKeyConstraint("tenant_id", "campaign_id"),
)



campaign_lists = Table(
    "campaign_lists",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("list_id", BigInteger, nullable=False),
    Column("name", Text),
    Column("contact_count", Integer),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("removed_at", TZ),
    PrimaryKeyConstraint("tenant_id", "campaign_id", "list_id"),
)

campaign_contacts = Table(
    "campaign_contacts",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("list_id", BigInteger, nullable=False),
    Column("customer_id", BigInteger),
    Column("phone_number", Text, nullable=False),
    Column("phone_canonical", Text),
    Column("name", Text),
    Column("process_status", SmallInteger),
    Column("call_status", Text),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_seen_at", TZ, nullable=False),
    Column("removed_at", TZ),
    PrimaryKeyConstraint("tenant_id", "campaign_id", "contact_id"),
    Index("campaign_contacts_phone", "tenant_id", "phone_canonical"),
)

campaign_contact_changes = Table(
    "campaign_contact_changes",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("seen_at", TZ, nullable=False),
    Column("process_status", SmallInteger),
    Column("call_status", Text),
    Column("removed", Boolean, nullable=False),
    PrimaryKeyConstraint("tenant_id", "campaign_id", "contact_id", "seen_at"),
)

campaign_dirty = Table(
    "campaign_dirty",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("phone", Text, nullable=False),
)

campaign_attempts = Table(
    "campaign_attempts",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("phone", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("started_at", TZ, nullable=False),
    Column("local_date", Date, nullable=False),
    Column("answered", Boolean, nullable=False),
    Column("ended", Boolean, nullable=False),
    Column("talk_seconds", Integer),
    Column("candidates", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "call_id"),
    Index("campaign_attempts_phone", "tenant_id", "phone"),
    Index("campaign_attempts_contact", "tenant_id", "campaign_id", "contact_id", "started_at"),
    Index("campaign_attempts_day", "tenant_id", "campaign_id", "local_date"),
)

campaign_rollup_daily = Table(
    "campaign_rollup_daily",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", BigInteger, nullable=False),
    Column("local_date", Date, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("contacts_dialled", Integer, nullable=False),
    Column("connected_contacts", Integer, nullable=False),
    Column("talk_count", Integer, nullable=False),
    Column("talk_sum", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "campaign_id", "local_date"),
)


# --- distribution (docs/scale.md) ---------------------------------------------
#
# Every table of schema callstore is one of two kinds, so that the schema can be
# spread over several PostgreSQL servers (Citus) by tenant without a redesign:
# - distributed: holds a tenant's data and grows with it. tenant_id is NOT NULL
#   and the first column of the primary key and of every unique constraint or
#   index, so all of a tenant's rows can live on one server and every key
#   lookup names the server;
# - reference: small, and read before any tenant is known or by every tenant;
#   under Citus a copy lives on every server.
# tests/store/test_distribution.py checks the migrated schema against these.

DISTRIBUTED: frozenset[str] = frozenset({
    "raw_events", "calls", "dead_letters", "queues", "queue_mappings",
    "alert_rules", "alerts", "alert_states", "alert_cursors", "alert_outbox", "alert_delivery_failures",
    "ingest_runs", "ingest_ledger", "sync_cursors",
    "queue_thresholds", "rollup_dirty", "queue_rollup_15m", "queue_rollup_hourly", "queue_rollup_daily",
    "recordings", "recording_downloads", "recording_access",
    "agent_rollup_daily", "agent_dirty",
    "campaigns", "campaign_lists", "campaign_contacts", "campaign_contact_changes", "campaign_dirty",
    "campaign_attempts", "campaign_rollup_daily",
})

#: Table name -> why it is a reference table.
REFERENCE: dict[str, str] = {
    "tenants": "one row per tenant, joined by every view and trigger that needs a tenant's zone",
    "api_tokens": "read to learn the tenant of a request (the token names it); the operator's token has none; "
                  "one row per token",
    "users": "a bare login name is looked up in every tenant before the tenant is known; one row per person",
    "console_sessions": "found by the cookie before the tenant is known; one row per live session "
                        "(idle ones are deleted)",
    "console_logins": "login throttling by name and address, before any tenant is known; rows per login attempt",
    "console_secrets": "the deployment's own secrets (the cookie signing key); a handful of rows",
    "job_leases": "which replica runs each scheduled job; one row per job",
    "locks": "rows locked to serialise jobs; one row per serialisation point",
    "spool_progress": "the receiver host's spool segments being drained, not a tenant's data; "
                      "deleted once drained",
    "recording_scan": "the recordings enqueuer's one cursor over every tenant's calls",
}
