"""Provisions: each time intake gave a person's details to another service, for which partner and purpose (0005).

Ids and codes only, no personal data: who asked (the calling service), the case and person by their
pseudonymous ids, the recipient partner, the purpose, the items given and the consent or statutory basis it rested on.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE provisions (
        provision_id  uuid PRIMARY KEY,
        case_id       uuid NOT NULL REFERENCES cases,
        person_ref    uuid NOT NULL REFERENCES persons,
        requested_by  text NOT NULL,           -- the calling service, e.g. service:partner-notification
        partner_id    uuid NOT NULL,           -- the recipient the details are for
        purpose       text NOT NULL,           -- a ConsentPurpose code
        items         text[] NOT NULL,         -- the items given (names of fields, not their values)
        basis         text NOT NULL,           -- 'consent' or a LegalBasis code
        grant_id      uuid NOT NULL,           -- the consent or statutory basis grant it rested on
        provided_at   timestamptz NOT NULL
    );
    CREATE INDEX provisions_by_case ON provisions (case_id, provided_at);
    CREATE INDEX provisions_by_partner ON provisions (partner_id, provided_at);
    """)
