"""Events addressed to a partner that arrived before the consent that lets it see them (0004)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE held_events (
        case_id     uuid NOT NULL,
        partner_id  uuid NOT NULL,
        event_id    uuid NOT NULL,
        headers     jsonb NOT NULL,
        value       bytea NOT NULL,
        held_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (case_id, partner_id, event_id)
    )
    """)
