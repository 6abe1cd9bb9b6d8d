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
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

SCHEMA = "callstore"
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
)

raw_events = Table(
    "raw_events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("source", Text, CheckConstraint("source IN ('webhook', 'history')"), nullable=False),
    Column("body_sha256", LargeBinary, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("flags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("deliveries", Integer, nullable=False, server_default=text("1")),
    Column("received_at", TZ, nullable=False, server_default=NOW),
    Column("last_received_at", TZ, nullable=False, server_default=NOW),
    UniqueConstraint("tenant_id", "call_id", "body_sha256", name="raw_events_delivery_key"),
    Index("raw_events_received_at", "received_at"),
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
    Column("flagged", Boolean, nullable=False, server_default=text("false")),
    Column("seen_webhook", Boolean, nullable=False, server_default=text("false")),
    Column("seen_history", Boolean, nullable=False, server_default=text("false")),
    Column("first_source", Text, CheckConstraint("first_source IN ('webhook', 'history')"), nullable=False),
    Column("first_seen_at", TZ, nullable=False, server_default=NOW),
    Column("updated_at", TZ, nullable=False, server_default=NOW),
    PrimaryKeyConstraint("tenant_id", "call_id"),
    Index("calls_started_at", "tenant_id", "started_at"),
    Index("calls_queue_started", "tenant_id", "queue_id", "started_at"),
    Index("calls_caller_number", "tenant_id", "caller_number"),
    Index("calls_transaction_id", "tenant_id", "transaction_id"),
    Index("calls_agent", "tenant_id", "agent"),
    Index("calls_updated_at", "updated_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("received_at", TZ, nullable=False, server_default=NOW),
    Column("tenant_id", Text),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("content_type", Text),
    Column("remote_addr", Text),
    Column("body", LargeBinary, nullable=False),
    Column("body_bytes", Integer, nullable=False),
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
)


# --- reports (migration 0003): thresholds, dirty keys, queue rollups --------

queue_thresholds = Table(
    "queue_thresholds",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("queue_id", BigInteger),
    Column("valid_from", TZ, nullable=False, server_default=text("'-infinity'")),
    Column("sla_seconds", Integer, CheckConstraint("sla_seconds >= 0"), nullable=False),
    Column("short_abandon_seconds", Integer, CheckConstraint("short_abandon_seconds >= 0"), nullable=False),
    Column("note", Text, nullable=False, server_default=text("''")),
    Column("created_at", TZ, nullable=False, server_default=NOW),
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
