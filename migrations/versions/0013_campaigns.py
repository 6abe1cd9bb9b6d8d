"""Outbound campaigns: the configured campaigns, their contact lists and contacts.

A contact is never deleted: one that Alohub stops listing gets `removed_at`.
Every change of a contact's `processStatus`, `callStatus` or presence is kept
in `campaign_contact_changes` with the time a sync first saw it, so progress
over time can be drawn.

Revision ID: 0013
Revises: 0006
Create Date: 2026-12-01
"""

from migrations.script import run

revision = "0013"
down_revision = "0006"
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
"""

DOWNGRADE = r"""
DROP TABLE callstore.campaign_contact_changes;
DROP TABLE callstore.campaign_contacts;
DROP TABLE callstore.campaign_lists;
DROP TABLE callstore.campaigns;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
