"""Provisions of personal data to partners, recorded as 個人情報保護法 art. 29 requires (0003)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE provisions (
        provision_id  uuid PRIMARY KEY,
        partner_id    uuid NOT NULL REFERENCES partners,
        person_ref    uuid NOT NULL,
        case_id       uuid NOT NULL,
        referral_id   uuid NOT NULL,
        items         text[] NOT NULL,
        basis         text NOT NULL,     -- 'consent' or a statutory basis code
        purpose       text NOT NULL,
        provided_at   timestamptz NOT NULL
    );
    CREATE INDEX provisions_by_partner ON provisions (partner_id, provided_at DESC);
    CREATE INDEX provisions_by_person ON provisions (person_ref, provided_at DESC)
    """)
