"""Referral sheets, referrals, and the routing table seeded from domain/routes.json (0002)."""

from alembic import op
from sqlalchemy import text

from tsunagu_referral.domain.routing import default_routes
from tsunagu_servicehost.migrations import run_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE sheets (
        sheet_id            uuid PRIMARY KEY,
        case_id             uuid NOT NULL UNIQUE,
        person_ref          uuid NOT NULL,
        municipality_code   text NOT NULL,
        needs               text[] NOT NULL,
        primary_need        text NOT NULL,
        urgency             text NOT NULL,
        opened_at           timestamptz NOT NULL,
        closed_at           timestamptz,
        closure_reason      text,
        last_contact_at     timestamptz,
        contact_overdue_at  timestamptz
    );
    CREATE INDEX sheets_open ON sheets (opened_at) WHERE closed_at IS NULL;

    CREATE TABLE referrals (
        referral_id      uuid PRIMARY KEY,
        case_id          uuid NOT NULL REFERENCES sheets (case_id),
        sheet_id         uuid NOT NULL REFERENCES sheets,
        need             text NOT NULL,
        recipient        jsonb NOT NULL,
        candidate_rank   int NOT NULL,
        status           text NOT NULL,
        urgency          text NOT NULL,
        accept_by        timestamptz NOT NULL,
        overdue_at       timestamptz,
        decline_reason   text,
        contact_method   text,
        outcome          text,
        requested_at     timestamptz NOT NULL,
        updated_at       timestamptz NOT NULL
    );
    CREATE INDEX referrals_by_case ON referrals (case_id, requested_at);
    CREATE INDEX referrals_waiting ON referrals (accept_by) WHERE status = 'requested' AND overdue_at IS NULL;
    CREATE INDEX referrals_by_status ON referrals (status, accept_by);

    CREATE TABLE routes (
        need       text NOT NULL,
        rank       int  NOT NULL,
        recipient  jsonb NOT NULL,
        PRIMARY KEY (need, rank)
    )
    """)
    routes, _ = default_routes()
    for need, recipients in routes.items():
        for rank, recipient in enumerate(recipients, start=1):
            op.get_bind().execute(
                text("INSERT INTO routes (need, rank, recipient) VALUES (:need, :rank, CAST(:recipient AS jsonb))"),
                {"need": need.value, "rank": rank, "recipient": recipient.model_dump_json(exclude_none=True)})
