"""Partner registry, subscriptions, what partners may see, deliveries and provisions (0002)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    run_sql("""
    -- One event may go on to several partners' topics under its own id.
    ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
    ALTER TABLE outbox ADD CONSTRAINT outbox_event_per_topic UNIQUE (event_id, topic);

    CREATE TABLE partners (
        partner_id         uuid PRIMARY KEY,
        name               text NOT NULL,
        need_categories    text[] NOT NULL,
        areas              text[] NOT NULL,
        contact            jsonb NOT NULL,
        api_token_hash     bytea NOT NULL UNIQUE,
        webhook_url        text,
        webhook_secret     bytea,               -- encrypted; needed to sign, so not hashed
        webhook_disabled_at timestamptz,
        kafka_topic        text,
        registered_at      timestamptz NOT NULL
    );

    CREATE TABLE subscriptions (
        partner_id       uuid PRIMARY KEY REFERENCES partners,
        event_types      text[] NOT NULL,
        need_categories  text[] NOT NULL,
        areas            text[] NOT NULL
    );

    -- What each partner may see: consent per case, or a recorded statutory basis.
    CREATE TABLE permissions (
        grant_id     uuid PRIMARY KEY,
        case_id      uuid NOT NULL,
        partner_id   uuid NOT NULL,
        person_ref   uuid NOT NULL,
        basis        text NOT NULL,             -- 'consent' or a LegalBasis code
        purpose      text NOT NULL,
        valid_until  date,
        revoked_at   timestamptz
    );
    CREATE INDEX permissions_by_case ON permissions (case_id, partner_id);

    CREATE TABLE partner_referrals (
        referral_id  uuid PRIMARY KEY,
        case_id      uuid NOT NULL,
        partner_id   uuid NOT NULL,
        municipality_code text NOT NULL,
        need         text NOT NULL,
        status       text NOT NULL,
        updated_at   timestamptz NOT NULL
    );

    CREATE TABLE case_needs (
        case_id    uuid PRIMARY KEY,
        person_ref uuid NOT NULL,
        needs      text[] NOT NULL
    );

    CREATE TABLE deliveries (
        delivery_id      uuid PRIMARY KEY,
        partner_id       uuid NOT NULL REFERENCES partners,
        event_id         uuid NOT NULL,
        event_type       text NOT NULL,
        case_id          uuid NOT NULL,
        body             text NOT NULL,         -- the CloudEvent as sent; signed the same on every attempt
        status           text NOT NULL,         -- pending, sending, delivered, dead
        attempts         int NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz NOT NULL,
        lease_until      timestamptz,
        last_status      int,
        last_error       text,
        created_at       timestamptz NOT NULL,
        delivered_at     timestamptz,
        UNIQUE (partner_id, event_id)
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
    CREATE INDEX deliveries_by_partner ON deliveries (partner_id, created_at DESC);

    CREATE TABLE responses (
        response_id  uuid PRIMARY KEY,
        partner_id   uuid NOT NULL,
        referral_id  uuid NOT NULL,
        response     text NOT NULL,
        created_at   timestamptz NOT NULL
    )
    """)
