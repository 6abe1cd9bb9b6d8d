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
    SmallInteger,
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
    Column("merge_ranks", ARRAY(SmallInteger), nullable=False, server_default=text("'{}'")),
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
    PrimaryKeyConstraint("tenant_id", "call_id"),
    Index("recordings_due", "status", "next_attempt_at"),
    Index("recordings_started", "status", "call_started_at"),
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
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("accessed_at", TZ, nullable=False, server_default=NOW),
    Column("token_id", BigInteger),
    Column("token_name", Text),
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
    Index("recording_access_call", "tenant_id", "call_id", "accessed_at"),
    Index("recording_access_time", "accessed_at"),
)
