"""Raw events with a lifecycle: partitioned per tenant and per month.

`callstore.raw_events` becomes a partitioned table: LIST (tenant_id), one
table per tenant (named from a hash of the tenant id, never the id itself),
each RANGE (raw_month), one table per month. The leaves live in schema
`callstore_raw`. `raw_month` is the first day of the UTC month in which the
call's first raw event was stored; it is kept on the call's row
(`calls.raw_month`, never changed), so all raw events of a call share one
partition and the delivery key (tenant, call, source, body hash, raw_month)
is exact for the call's whole life. A tenant's retention drops whole month
partitions; `tenants.raw_floor` is the oldest month kept, where late events
of a call whose month was dropped are stored.

Inserts are never refused: a DEFAULT partition per tenant holds rows of
months not created yet, and one DEFAULT partition holds tenants without a
table yet; the `raw-partitions` job moves such rows into their own
partitions (store/raw_partitions.py).

Each raw event keeps its body as `body bytea`: the exact bytes received,
packed by store/raw_body.py (a version byte, then deflate with a preset
dictionary), instead of a jsonb `payload`: PostgreSQL compresses nothing in a
row under about 2 KB, and a body is ~450 bytes. The column's storage is
EXTERNAL (PostgreSQL does not try to compress it again).

Upgrading copies every raw event into the new layout, its payload's JSON text
packed in Python in batches (and sets each call's raw_month from its earliest
raw event: one update of every calls row). Downgrading unpacks each body into
jsonb again (U+0000, which jsonb cannot hold, becomes U+FFFD as before).
The surrogate `id` and the `received_at` index go: nothing used them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from typing import Any

import orjson
from alembic import op
from sqlalchemy import text

from migrations.script import run
from store import raw_body

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


FUNCTIONS = r"""
-- The table of a tenant's raw events: a hash of the tenant id (tenant ids are configuration
-- strings; a name derived from them must not carry them).
CREATE FUNCTION callstore.raw_tenant_table(p_tenant text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 't_' || substr(md5(p_tenant), 1, 16) $$;

-- Storage of a leaf partition: the body is stored compressed by callstore (store/raw_body.py);
-- PostgreSQL is not to try compressing it again (out of line only when a row would not fit a page).
CREATE FUNCTION callstore.raw_leaf_setup(p_table text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE callstore_raw.%I ALTER COLUMN body SET STORAGE EXTERNAL', p_table);
END
$$;

-- The tenant's table (and its DEFAULT partition); rows of the tenant held by the top DEFAULT
-- partition move into it. Returns whether it was created.
CREATE FUNCTION callstore.raw_ensure_tenant(p_tenant text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t text := callstore.raw_tenant_table(p_tenant);
BEGIN
    IF to_regclass('callstore_raw.' || t) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE callstore_raw.raw_events_default IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE callstore_raw.%I (LIKE callstore.raw_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
                   ' PARTITION BY RANGE (raw_month)', t);
    EXECUTE format('CREATE TABLE callstore_raw.%I PARTITION OF callstore_raw.%I DEFAULT', t || '_default', t);
    PERFORM callstore.raw_leaf_setup(t || '_default');
    EXECUTE format('WITH moved AS (DELETE FROM callstore_raw.raw_events_default WHERE tenant_id = %L RETURNING *)'
                   ' INSERT INTO callstore_raw.%I SELECT * FROM moved', p_tenant, t);
    EXECUTE format('ALTER TABLE callstore.raw_events ATTACH PARTITION callstore_raw.%I FOR VALUES IN (%L)', t, p_tenant);
    RETURN true;
END
$$;

-- The tenant's partition of a month; its rows held by the tenant's DEFAULT partition move
-- into it. Returns whether it was created.
CREATE FUNCTION callstore.raw_ensure_month(p_tenant text, p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t text := callstore.raw_tenant_table(p_tenant);
    first date := date_trunc('month', p_month)::date;
    next date := (date_trunc('month', p_month) + interval '1 month')::date;
    m text := t || '_' || to_char(first, 'YYYYMM');
BEGIN
    PERFORM callstore.raw_ensure_tenant(p_tenant);
    IF to_regclass('callstore_raw.' || m) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('LOCK TABLE callstore_raw.%I IN SHARE ROW EXCLUSIVE MODE', t || '_default');
    EXECUTE format('CREATE TABLE callstore_raw.%I (LIKE callstore.raw_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', m);
    PERFORM callstore.raw_leaf_setup(m);
    EXECUTE format('WITH moved AS (DELETE FROM callstore_raw.%I WHERE raw_month >= %L AND raw_month < %L RETURNING *)'
                   ' INSERT INTO callstore_raw.%I SELECT * FROM moved', t || '_default', first, next, m);
    EXECUTE format('ALTER TABLE callstore_raw.%I ATTACH PARTITION callstore_raw.%I FOR VALUES FROM (%L) TO (%L)',
                   t, m, first, next);
    RETURN true;
END
$$;

-- Retention: the tenant keeps months from p_floor on. Raises the tenant's floor (never lowers
-- it) and drops its older month partitions; returns the months dropped.
CREATE FUNCTION callstore.raw_drop_before(p_tenant text, p_floor date) RETURNS SETOF date
LANGUAGE plpgsql AS $$
DECLARE
    t text := callstore.raw_tenant_table(p_tenant);
    floor_month date := date_trunc('month', p_floor)::date;
    part record;
BEGIN
    UPDATE callstore.tenants SET raw_floor = greatest(raw_floor, floor_month)
    WHERE tenant_id = p_tenant AND raw_floor IS DISTINCT FROM greatest(raw_floor, floor_month);
    IF to_regclass('callstore_raw.' || t) IS NULL THEN
        RETURN;
    END IF;
    FOR part IN
        SELECT c.relname, to_date(right(c.relname, 6), 'YYYYMM') AS month
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = ('callstore_raw.' || t)::regclass AND c.relname ~ '_[0-9]{6}$'
        ORDER BY 2
    LOOP
        IF part.month < floor_month THEN
            EXECUTE format('DROP TABLE callstore_raw.%I', part.relname);
            RETURN NEXT part.month;
        END IF;
    END LOOP;
    -- Rows still waiting in the DEFAULT partition (the job moves them out first).
    EXECUTE format('DELETE FROM callstore_raw.%I WHERE raw_month < %L', t || '_default', floor_month);
END
$$;

REVOKE EXECUTE ON FUNCTION callstore.raw_tenant_table(text), callstore.raw_leaf_setup(text),
    callstore.raw_ensure_tenant(text), callstore.raw_ensure_month(text, date),
    callstore.raw_drop_before(text, date) FROM PUBLIC;
"""

UPGRADE = r"""
CREATE SCHEMA callstore_raw;
REVOKE ALL ON SCHEMA callstore_raw FROM PUBLIC;

ALTER TABLE callstore.tenants ADD COLUMN raw_floor date;
ALTER TABLE callstore.calls ADD COLUMN raw_month date NOT NULL
    DEFAULT (date_trunc('month', now() AT TIME ZONE 'UTC'))::date;

ALTER TABLE callstore.raw_events RENAME TO raw_events_0013;
ALTER TABLE callstore.raw_events_0013 RENAME CONSTRAINT raw_events_delivery_key TO raw_events_0013_key;
ALTER TABLE callstore.raw_events_0013 RENAME CONSTRAINT raw_events_pkey TO raw_events_0013_pkey;
ALTER INDEX callstore.raw_events_received_at RENAME TO raw_events_0013_received_at;

-- Column order: fixed-width columns first, the body last. The body is the exact bytes received,
-- packed by store/raw_body.py (a version byte, then deflate with a preset dictionary).
CREATE TABLE callstore.raw_events (
    tenant_id        text NOT NULL,
    raw_month        date NOT NULL,
    deliveries       integer NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL DEFAULT now(),
    last_received_at timestamptz NOT NULL DEFAULT now(),
    call_id          text NOT NULL,
    source           text NOT NULL CHECK (source IN ('webhook', 'history')),
    body_sha256      bytea NOT NULL,
    flags            text[] NOT NULL DEFAULT '{}',
    body             bytea NOT NULL,
    CONSTRAINT raw_events_delivery_key UNIQUE (tenant_id, call_id, source, body_sha256, raw_month)
) PARTITION BY LIST (tenant_id);
CREATE TABLE callstore_raw.raw_events_default PARTITION OF callstore.raw_events DEFAULT;
""" + FUNCTIONS + r"""
SELECT callstore.raw_leaf_setup('raw_events_default');

-- Each call's month: that of its earliest raw event.
UPDATE callstore.calls k SET raw_month = f.month
FROM (SELECT tenant_id, call_id, date_trunc('month', min(received_at) AT TIME ZONE 'UTC')::date AS month
      FROM callstore.raw_events_0013 GROUP BY tenant_id, call_id) f
WHERE k.tenant_id = f.tenant_id AND k.call_id = f.call_id AND k.raw_month <> f.month;

CREATE TABLE callstore.raw_events_0013_month AS
SELECT r.id, coalesce(k.raw_month, date_trunc('month', r.received_at AT TIME ZONE 'UTC')::date) AS raw_month
FROM callstore.raw_events_0013 r
LEFT JOIN callstore.calls k ON k.tenant_id = r.tenant_id AND k.call_id = r.call_id;

SELECT count(callstore.raw_ensure_month(x.tenant_id, x.raw_month))
FROM (SELECT DISTINCT r.tenant_id, m.raw_month
      FROM callstore.raw_events_0013 r JOIN callstore.raw_events_0013_month m ON m.id = r.id
      ORDER BY 1, 2) x;"""

# Between the two: every old raw event is copied, its body packed in Python.
UPGRADE_END = r"""
DROP TABLE callstore.raw_events_0013_month;
DROP TABLE callstore.raw_events_0013;
"""

DOWNGRADE_START = r"""
-- Each body as jsonb again, filled from Python (unpacked there).
CREATE TABLE callstore.raw_events_0015_payload (
    tenant_id text NOT NULL, call_id text NOT NULL, source text NOT NULL, body_sha256 bytea NOT NULL,
    raw_month date NOT NULL, payload jsonb NOT NULL,
    PRIMARY KEY (tenant_id, call_id, source, body_sha256, raw_month)
);
"""

DOWNGRADE = r"""
CREATE TABLE callstore.raw_events_0014 (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL,
    call_id          text NOT NULL,
    source           text NOT NULL CHECK (source IN ('webhook', 'history')),
    body_sha256      bytea NOT NULL,
    payload          jsonb NOT NULL,
    flags            text[] NOT NULL DEFAULT '{}',
    deliveries       integer NOT NULL DEFAULT 1,
    received_at      timestamptz NOT NULL DEFAULT now(),
    last_received_at timestamptz NOT NULL DEFAULT now()
);
-- A payload stored in two months (delivered again after its first month was dropped) is one
-- row again.
INSERT INTO callstore.raw_events_0014
    (tenant_id, call_id, source, body_sha256, payload, flags, deliveries, received_at, last_received_at)
SELECT tenant_id, call_id, source, body_sha256, payload, flags, total::int, received_at, last
FROM (SELECT r.*, p.payload, sum(r.deliveries) OVER w AS total, max(r.last_received_at) OVER w AS last,
             row_number() OVER (w ORDER BY r.received_at) AS n
      FROM callstore.raw_events r
      JOIN callstore.raw_events_0015_payload p USING (tenant_id, call_id, source, body_sha256, raw_month)
      WINDOW w AS (PARTITION BY r.tenant_id, r.call_id, r.source, r.body_sha256)) g
WHERE n = 1
ORDER BY received_at;
DROP TABLE callstore.raw_events_0015_payload;
DROP TABLE callstore.raw_events;
DROP SCHEMA callstore_raw CASCADE;
DROP FUNCTION callstore.raw_drop_before(text, date);
DROP FUNCTION callstore.raw_ensure_month(text, date);
DROP FUNCTION callstore.raw_ensure_tenant(text);
DROP FUNCTION callstore.raw_leaf_setup(text);
DROP FUNCTION callstore.raw_tenant_table(text);
ALTER TABLE callstore.raw_events_0014 RENAME TO raw_events;
ALTER TABLE callstore.raw_events RENAME CONSTRAINT raw_events_0014_pkey TO raw_events_pkey;
ALTER TABLE callstore.raw_events ADD CONSTRAINT raw_events_delivery_key UNIQUE (tenant_id, call_id, source, body_sha256);
CREATE INDEX raw_events_received_at ON callstore.raw_events (received_at);
ALTER TABLE callstore.calls DROP COLUMN raw_month;
ALTER TABLE callstore.tenants DROP COLUMN raw_floor;
"""


#: Raw events copied per statement (keyset pagination: memory stays flat).
BATCH = 2000

_READ_0013 = text(
    "SELECT id, payload::text FROM callstore.raw_events_0013 WHERE id > :after ORDER BY id LIMIT :n"
)
_COPY_0013 = text(
    """
    INSERT INTO callstore.raw_events
        (tenant_id, raw_month, deliveries, received_at, last_received_at, call_id, source, body_sha256, flags, body)
    SELECT r.tenant_id, m.raw_month, r.deliveries, r.received_at, r.last_received_at, r.call_id, r.source,
           r.body_sha256, r.flags, b.body
    FROM unnest(CAST(:ids AS bigint[]), CAST(:bodies AS bytea[])) AS b(id, body)
    JOIN callstore.raw_events_0013 r ON r.id = b.id
    JOIN callstore.raw_events_0013_month m ON m.id = b.id
    ORDER BY b.id
    """
)
_KEY = "tenant_id, call_id, source, body_sha256, raw_month"
_READ_0015 = text(
    f"SELECT {_KEY}, body FROM callstore.raw_events"
    f" WHERE ({_KEY}) > (:t, :c, :s, :h, :m) ORDER BY {_KEY} LIMIT :n"
)
_READ_0015_FIRST = text(f"SELECT {_KEY}, body FROM callstore.raw_events ORDER BY {_KEY} LIMIT :n")
_COPY_0015 = text(
    f"""
    INSERT INTO callstore.raw_events_0015_payload ({_KEY}, payload)
    SELECT * FROM unnest(CAST(:t AS text[]), CAST(:c AS text[]), CAST(:s AS text[]), CAST(:h AS bytea[]),
                         CAST(:m AS date[]), CAST(:p AS text[])::jsonb[])
    """
)


def _copy_packed() -> None:
    """Every raw event of the old table into the new one, its jsonb payload packed as a body."""
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(_READ_0013, {"after": after, "n": BATCH}).all()
        if not rows:
            return
        conn.execute(_COPY_0013, {"ids": [r[0] for r in rows],
                                  "bodies": [raw_body.pack(r[1].encode()) for r in rows]})
        after = rows[-1][0]


def _as_jsonb_text(body: bytes) -> str:
    """A body as the previous version stored it: jsonb cannot hold U+0000 (it was replaced)."""
    if b"\\u0000" in body:
        try:
            return orjson.dumps(_without_nul(orjson.loads(body))).decode()
        except orjson.JSONDecodeError:
            pass
    try:
        orjson.loads(body)
        return body.decode()
    except (orjson.JSONDecodeError, UnicodeDecodeError):  # not JSON: kept as a JSON string
        return orjson.dumps(body.decode("utf-8", "replace").replace("\x00", "\ufffd")).decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _copy_unpacked() -> None:
    conn = op.get_bind()
    rows = conn.execute(_READ_0015_FIRST, {"n": BATCH}).all()
    while rows:
        conn.execute(_COPY_0015, {
            "t": [r[0] for r in rows], "c": [r[1] for r in rows], "s": [r[2] for r in rows],
            "h": [bytes(r[3]) for r in rows], "m": [r[4] for r in rows],
            "p": [_as_jsonb_text(raw_body.unpack(r[5])) for r in rows],
        })
        t, c, s, h, m = rows[-1][:5]
        rows = conn.execute(_READ_0015, {"t": t, "c": c, "s": s, "h": h, "m": m, "n": BATCH}).all()


def upgrade() -> None:
    run(UPGRADE)
    _copy_packed()
    run(UPGRADE_END)


def downgrade() -> None:
    run(DOWNGRADE_START)
    _copy_unpacked()
    run(DOWNGRADE)
