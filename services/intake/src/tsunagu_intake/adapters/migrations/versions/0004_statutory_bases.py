"""Statutory bases (支援会議の決定) and the grants each records, one per member and purpose (0004)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE statutory_bases (
        basis_id      uuid PRIMARY KEY,
        case_id       uuid NOT NULL REFERENCES cases,
        person_ref    uuid NOT NULL REFERENCES persons,
        basis         text NOT NULL,           -- a LegalBasis code
        held_on       date NOT NULL,           -- the day the conference decided
        valid_until   date NOT NULL,
        members       jsonb NOT NULL,          -- the recipients covered, divisions and partners
        purposes      text[] NOT NULL,         -- ConsentPurpose codes: what may be shared
        recorded_by   text NOT NULL,
        recorded_at   timestamptz NOT NULL,
        ended_at      timestamptz,
        ended_by      text
    );
    CREATE INDEX statutory_bases_by_case ON statutory_bases (case_id, recorded_at);

    -- What StatutoryBasisRecorded and StatutoryBasisEnded name: one member, one purpose.
    CREATE TABLE statutory_basis_grants (
        grant_id   uuid PRIMARY KEY,
        basis_id   uuid NOT NULL REFERENCES statutory_bases,
        recipient  jsonb NOT NULL,
        purpose    text NOT NULL,
        UNIQUE (basis_id, recipient, purpose)
    );
    """)
