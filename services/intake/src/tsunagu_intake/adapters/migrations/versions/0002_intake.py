"""Persons, cases, consultations, consents, idempotency keys and the case-referral view (0002)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE persons (
        person_ref     uuid PRIMARY KEY,
        details        bytea       NOT NULL,  -- encrypted: name, kana, birth date, contact
        duplicate_key  bytea       NOT NULL,  -- HMAC of normalised kana name and birth date
        registered_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX persons_duplicate_key ON persons (duplicate_key);

    CREATE TABLE cases (
        case_id            uuid PRIMARY KEY,
        person_ref         uuid NOT NULL REFERENCES persons,
        municipality_code  text NOT NULL,
        opened_at          timestamptz NOT NULL,
        closed_at          timestamptz,
        closure_reason     text
    );
    CREATE INDEX cases_open_by_person ON cases (person_ref) WHERE closed_at IS NULL;

    CREATE TABLE consultations (
        consultation_id   uuid PRIMARY KEY,
        case_id           uuid NOT NULL REFERENCES cases,
        counter           text NOT NULL,
        channel           text NOT NULL,
        urgency           text NOT NULL,
        needs             text[] NOT NULL,
        primary_need      text NOT NULL,
        chart_version     text,
        cues              text[] NOT NULL DEFAULT '{}',
        confirmed         text[] NOT NULL DEFAULT '{}',
        notes             bytea,               -- encrypted free text; leaves intake only as a recorded provision
        registered_by     text NOT NULL,
        registered_at     timestamptz NOT NULL
    );
    CREATE INDEX consultations_by_case ON consultations (case_id, registered_at);

    CREATE TABLE consents (
        consent_id      uuid PRIMARY KEY,
        case_id         uuid NOT NULL REFERENCES cases,
        person_ref      uuid NOT NULL REFERENCES persons,
        recipient       jsonb NOT NULL,
        purpose         text NOT NULL,
        method          text NOT NULL,
        valid_until     date,
        granted_at      timestamptz NOT NULL,
        withdrawn_at    timestamptz
    );
    CREATE INDEX consents_by_case ON consents (case_id);

    CREATE TABLE idempotency_keys (
        principal     text NOT NULL,
        key           text NOT NULL,
        request_hash  bytea NOT NULL,
        status        int,
        response      jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (principal, key)
    );

    CREATE TABLE case_referrals (
        referral_id  uuid PRIMARY KEY,
        case_id      uuid NOT NULL,
        need         text,
        recipient    jsonb NOT NULL,
        status       text NOT NULL,
        overdue      boolean NOT NULL DEFAULT false,
        updated_at   timestamptz NOT NULL
    );
    CREATE INDEX case_referrals_by_case ON case_referrals (case_id);
    """)
