"""Outbound campaigns: the configured campaigns, their contact lists and contacts,
the attribution of outbound calls to contacts, a daily rollup and three views.

A contact is never deleted: one that Alohub stops listing gets `removed_at`.
Every change of a contact's `processStatus`, `callStatus` or presence is kept
in `campaign_contact_changes` with the time a sync first saw it, so progress
over time can be drawn.

Attribution is incremental: a trigger on calls and the campaign sync append
the customer numbers whose attribution may have changed to
`campaign_dirty`; reports/campaigns.py recomputes the attempts of those
numbers and the daily rollup rows they touch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE TABLE callstore.campaigns (
    tenant_id        text NOT NULL,
    campaign_id      bigint NOT NULL,
    name             text,
    -- 'cli' (callstore campaigns add) or 'config' (campaign_ids of the tenants file)
    added_by         text NOT NULL CHECK (added_by IN ('cli', 'config')),
    added_at         timestamptz NOT NULL DEFAULT now(),
    first_synced_at  timestamptz,
    last_synced_at   timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    -- `campaigns remove`: no longer synced; what was synced is kept
    removed_at       timestamptz,
    PRIMARY KEY (tenant_id, campaign_id)
);

CREATE TABLE callstore.campaign_lists (
    tenant_id      text NOT NULL,
    campaign_id    bigint NOT NULL,
    list_id        bigint NOT NULL,
    name           text,
    contact_count  integer,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    removed_at     timestamptz,
    PRIMARY KEY (tenant_id, campaign_id, list_id)
);

CREATE TABLE callstore.campaign_contacts (
    tenant_id        text NOT NULL,
    campaign_id      bigint NOT NULL,
    contact_id       bigint NOT NULL,
    list_id          bigint NOT NULL,
    customer_id      bigint,
    phone_number     text NOT NULL,
    -- E.164 digits (store/phone.py), the key calls are matched on
    phone_canonical  text,
    -- only when the tenant's store_contact_names is true
    name             text,
    process_status   smallint,
    call_status      text,
    first_seen_at    timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    removed_at       timestamptz,
    PRIMARY KEY (tenant_id, campaign_id, contact_id)
);
CREATE INDEX campaign_contacts_phone ON callstore.campaign_contacts (tenant_id, phone_canonical);

CREATE TABLE callstore.campaign_contact_changes (
    tenant_id       text NOT NULL,
    campaign_id     bigint NOT NULL,
    contact_id      bigint NOT NULL,
    seen_at         timestamptz NOT NULL,
    process_status  smallint,
    call_status     text,
    removed         boolean NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, contact_id, seen_at)
);

-- Customer numbers whose attempts must be recomputed (drained by the refresh).
CREATE TABLE callstore.campaign_dirty (
    tenant_id  text NOT NULL,
    phone      text NOT NULL
);

-- One row per outbound call attributed to a campaign contact.
CREATE TABLE callstore.campaign_attempts (
    tenant_id     text NOT NULL,
    call_id       text NOT NULL,
    phone         text NOT NULL,
    campaign_id   bigint NOT NULL,
    contact_id    bigint NOT NULL,
    started_at    timestamptz NOT NULL,
    local_date    date NOT NULL,
    answered      boolean NOT NULL,
    ended         boolean NOT NULL,
    -- ended - answered, for answered and ended attempts
    talk_seconds  integer,
    -- contacts that could own this call; more than one is an ambiguous attribution
    candidates    integer NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX campaign_attempts_phone ON callstore.campaign_attempts (tenant_id, phone);
CREATE INDEX campaign_attempts_contact ON callstore.campaign_attempts (tenant_id, campaign_id, contact_id, started_at);
CREATE INDEX campaign_attempts_day ON callstore.campaign_attempts (tenant_id, campaign_id, local_date);

CREATE TABLE callstore.campaign_rollup_daily (
    tenant_id           text NOT NULL,
    campaign_id         bigint NOT NULL,
    local_date          date NOT NULL,
    attempts            integer NOT NULL,
    contacts_dialled    integer NOT NULL,
    connected_contacts  integer NOT NULL,
    talk_count          integer NOT NULL,
    talk_sum            bigint NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, local_date)
);

ALTER TABLE callstore.tenants ADD COLUMN bi_phone_numbers text NOT NULL DEFAULT 'masked'
    CHECK (bi_phone_numbers IN ('masked', 'full', 'hidden'));

-- Outbound calls to a contact's number, inserted, changed or deleted: mark
-- the number (old and new) for the refresh. One INSERT ... SELECT a statement;
-- numbers of no contact are skipped by the index on phone_canonical.
CREATE FUNCTION callstore.calls_mark_campaign_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO callstore.campaign_dirty (tenant_id, phone)
        SELECT DISTINCT n.tenant_id, n.caller_number FROM new_calls n
        WHERE n.direction = 'outbound' AND n.caller_number IS NOT NULL
          AND EXISTS (SELECT 1 FROM callstore.campaign_contacts k
                      WHERE k.tenant_id = n.tenant_id AND k.phone_canonical = n.caller_number);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO callstore.campaign_dirty (tenant_id, phone)
        SELECT DISTINCT o.tenant_id, o.caller_number FROM old_calls o
        WHERE o.direction = 'outbound' AND o.caller_number IS NOT NULL
          AND EXISTS (SELECT 1 FROM callstore.campaign_contacts k
                      WHERE k.tenant_id = o.tenant_id AND k.phone_canonical = o.caller_number);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER calls_campaign_insert AFTER INSERT ON callstore.calls
    REFERENCING NEW TABLE AS new_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_campaign_dirty();
CREATE TRIGGER calls_campaign_update AFTER UPDATE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_campaign_dirty();
CREATE TRIGGER calls_campaign_delete AFTER DELETE ON callstore.calls
    REFERENCING OLD TABLE AS old_calls FOR EACH STATEMENT EXECUTE FUNCTION callstore.calls_mark_campaign_dirty();

CREATE VIEW analytics.campaigns AS
SELECT
    c.tenant_id,
    c.campaign_id,
    c.name,
    (SELECT count(*) FROM callstore.campaign_lists l
      WHERE l.tenant_id = c.tenant_id AND l.campaign_id = c.campaign_id AND l.removed_at IS NULL) AS lists,
    count(k.contact_id) FILTER (WHERE k.removed_at IS NULL) AS contacts_total,
    count(k.contact_id) FILTER (WHERE k.removed_at IS NULL AND k.process_status = 0) AS contacts_pending,
    count(k.contact_id) FILTER (WHERE k.removed_at IS NULL AND k.process_status = 1) AS contacts_in_call,
    count(k.contact_id) FILTER (WHERE k.removed_at IS NULL AND k.process_status = 2) AS contacts_processed,
    count(k.contact_id) FILTER (WHERE k.removed_at IS NOT NULL) AS contacts_removed,
    c.first_synced_at,
    c.last_synced_at,
    c.last_error,
    c.removed_at IS NULL AS followed
FROM callstore.campaigns c
LEFT JOIN callstore.campaign_contacts k ON k.tenant_id = c.tenant_id AND k.campaign_id = c.campaign_id
GROUP BY c.tenant_id, c.campaign_id;

CREATE VIEW analytics.campaign_contacts AS
SELECT
    k.tenant_id,
    k.campaign_id,
    k.list_id,
    k.contact_id,
    CASE t.bi_phone_numbers
        WHEN 'full' THEN k.phone_canonical
        WHEN 'hidden' THEN NULL
        ELSE repeat('*', greatest(length(k.phone_canonical) - 3, 0)) || right(k.phone_canonical, 3)
    END AS phone_number,
    k.process_status,
    k.call_status,
    coalesce(a.attempts, 0) AS attempts,
    a.first_attempt_at,
    a.last_attempt_at,
    coalesce(a.connected, false) AS connected,
    coalesce(a.talk_seconds, 0) AS talk_seconds,
    k.first_seen_at,
    k.removed_at
FROM callstore.campaign_contacts k
JOIN callstore.tenants t ON t.tenant_id = k.tenant_id
LEFT JOIN LATERAL (
    SELECT count(*) AS attempts, min(x.started_at) AS first_attempt_at, max(x.started_at) AS last_attempt_at,
           bool_or(x.answered) AS connected, sum(x.talk_seconds) AS talk_seconds
    FROM callstore.campaign_attempts x
    WHERE x.tenant_id = k.tenant_id AND x.campaign_id = k.campaign_id AND x.contact_id = k.contact_id
) a ON true;

-- Per campaign and local day, from the first to the last day with an attempt
-- or a sync. The day's activity comes from the rollup; the running figures
-- (contacts present at the end of the day, contacts dialled so far) from
-- per-contact events summed over the days, never from calls.
CREATE VIEW analytics.campaign_daily AS
WITH contact_days AS (
    SELECT k.tenant_id, k.campaign_id, k.contact_id,
           (k.removed_at AT TIME ZONE t.timezone)::date AS removed_date,
           (SELECT (min(x.started_at) AT TIME ZONE t.timezone)::date FROM callstore.campaign_attempts x
             WHERE x.tenant_id = k.tenant_id AND x.campaign_id = k.campaign_id AND x.contact_id = k.contact_id)
               AS first_attempt_date,
           (SELECT (min(h.seen_at) AT TIME ZONE t.timezone)::date FROM callstore.campaign_contact_changes h
             WHERE h.tenant_id = k.tenant_id AND h.campaign_id = k.campaign_id AND h.contact_id = k.contact_id
               AND h.process_status = 2) AS processed_date
    FROM callstore.campaign_contacts k
    JOIN callstore.tenants t ON t.tenant_id = k.tenant_id
), events AS (
    SELECT tenant_id, campaign_id, removed_date AS day, -1 AS present, 0 AS dialled, 0 AS processed
      FROM contact_days WHERE removed_date IS NOT NULL
    UNION ALL
    SELECT tenant_id, campaign_id, first_attempt_date, 0, 1, 0 FROM contact_days WHERE first_attempt_date IS NOT NULL
    UNION ALL
    SELECT tenant_id, campaign_id, removed_date, 0, -1, 0 FROM contact_days
      WHERE first_attempt_date IS NOT NULL AND removed_date IS NOT NULL
    UNION ALL
    SELECT tenant_id, campaign_id, processed_date, 0, 0, 1 FROM contact_days WHERE processed_date IS NOT NULL
), per_day AS (
    SELECT tenant_id, campaign_id, day, sum(present) AS present, sum(dialled) AS dialled,
           sum(processed) AS processed
    FROM events GROUP BY 1, 2, 3
), span AS (
    SELECT c.tenant_id, c.campaign_id, t.timezone,
           least((c.first_synced_at AT TIME ZONE t.timezone)::date,
                 (SELECT min(r.local_date) FROM callstore.campaign_rollup_daily r
                   WHERE r.tenant_id = c.tenant_id AND r.campaign_id = c.campaign_id)) AS first_day,
           greatest((c.last_synced_at AT TIME ZONE t.timezone)::date,
                    (SELECT max(r.local_date) FROM callstore.campaign_rollup_daily r
                      WHERE r.tenant_id = c.tenant_id AND r.campaign_id = c.campaign_id)) AS last_day,
           (SELECT count(*) FROM callstore.campaign_contacts k
             WHERE k.tenant_id = c.tenant_id AND k.campaign_id = c.campaign_id) AS contacts_ever
    FROM callstore.campaigns c
    JOIN callstore.tenants t ON t.tenant_id = c.tenant_id
), days AS (
    SELECT s.tenant_id, s.campaign_id, s.contacts_ever, d::date AS local_date
    FROM span s CROSS JOIN LATERAL generate_series(s.first_day, s.last_day, interval '1 day') d
    WHERE s.first_day IS NOT NULL
), running AS (
    SELECT d.tenant_id, d.campaign_id, d.local_date,
           d.contacts_ever + sum(coalesce(p.present, 0)) OVER w AS contacts_total,
           sum(coalesce(p.dialled, 0)) OVER w AS dialled_so_far,
           coalesce(p.processed, 0) AS contacts_processed
    FROM days d
    LEFT JOIN per_day p ON p.tenant_id = d.tenant_id AND p.campaign_id = d.campaign_id AND p.day = d.local_date
    WINDOW w AS (PARTITION BY d.tenant_id, d.campaign_id ORDER BY d.local_date)
)
SELECT
    g.tenant_id,
    g.campaign_id,
    g.local_date,
    g.contacts_total::integer AS contacts_total,
    coalesce(r.contacts_dialled, 0) AS contacts_dialled,
    coalesce(r.attempts, 0) AS attempts,
    coalesce(r.connected_contacts, 0) AS connected_contacts,
    r.connected_contacts::double precision / nullif(r.contacts_dialled, 0) AS connect_rate,
    r.attempts::double precision / nullif(r.connected_contacts, 0) AS attempts_per_connected,
    coalesce(r.talk_sum, 0) AS talk_seconds,
    r.talk_sum::double precision / nullif(r.talk_count, 0) AS aht_seconds,
    g.dialled_so_far::double precision / nullif(g.contacts_total, 0) AS penetration,
    g.contacts_processed::integer AS contacts_processed
FROM running g
LEFT JOIN callstore.campaign_rollup_daily r
       ON r.tenant_id = g.tenant_id AND r.campaign_id = g.campaign_id AND r.local_date = g.local_date;
"""

DOWNGRADE = r"""
DROP VIEW analytics.campaign_daily;
DROP VIEW analytics.campaign_contacts;
DROP VIEW analytics.campaigns;
DROP TRIGGER calls_campaign_insert ON callstore.calls;
DROP TRIGGER calls_campaign_update ON callstore.calls;
DROP TRIGGER calls_campaign_delete ON callstore.calls;
DROP FUNCTION callstore.calls_mark_campaign_dirty();
ALTER TABLE callstore.tenants DROP COLUMN bi_phone_numbers;
DROP TABLE callstore.campaign_rollup_daily;
DROP TABLE callstore.campaign_attempts;
DROP TABLE callstore.campaign_dirty;
DROP TABLE callstore.campaign_contact_changes;
DROP TABLE callstore.campaign_contacts;
DROP TABLE callstore.campaign_lists;
DROP TABLE callstore.campaigns;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
