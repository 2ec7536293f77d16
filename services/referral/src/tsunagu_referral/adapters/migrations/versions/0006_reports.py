"""The coordinators' report figures: a read model projected from the events (0006).

Every row comes from an event, through the projection (handlers/reports.py), so the tables can be
emptied and filled again from the log (`python -m tsunagu_referral rebuild-reports`). They hold ids,
codes and times only: a person is counted by the pseudonymous `person_ref` the events carry.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE report_consultations (
        consultation_id  uuid PRIMARY KEY,
        case_id          uuid NOT NULL,
        person_ref       uuid NOT NULL,
        registered_at    timestamptz NOT NULL
    );
    CREATE INDEX report_consultations_by_time ON report_consultations (registered_at);
    CREATE INDEX report_consultations_by_case ON report_consultations (case_id);

    CREATE TABLE report_case_needs (
        case_id             uuid NOT NULL,
        need                text NOT NULL,
        first_identified_at timestamptz NOT NULL,
        PRIMARY KEY (case_id, need)
    );

    CREATE TABLE report_referrals (
        referral_id      uuid PRIMARY KEY,
        case_id          uuid NOT NULL,
        recipient_kind   text NOT NULL,
        recipient        text NOT NULL,
        need             text,
        requested_at     timestamptz,
        first_answer_at  timestamptz,
        accepted_at      timestamptz,
        declined_at      timestamptz,
        decline_reason   text,
        overdue_at       timestamptz,
        rerouted_at      timestamptz,
        reroute_reason   text,
        completed_at     timestamptz,
        outcome          text
    );
    CREATE INDEX report_referrals_requested ON report_referrals (requested_at);

    CREATE TABLE report_case_closures (
        event_id   uuid PRIMARY KEY,
        case_id    uuid NOT NULL,
        closed_at  timestamptz NOT NULL,
        reason     text NOT NULL
    );

    CREATE TABLE report_delivery_failures (
        delivery_id  uuid PRIMARY KEY,
        partner_id   uuid NOT NULL,
        referral_id  uuid,
        failed_at    timestamptz NOT NULL
    );

    CREATE TABLE report_follow_ups (
        follow_up_id  uuid PRIMARY KEY,
        case_id       uuid NOT NULL,
        referral_id   uuid NOT NULL,
        need          text NOT NULL,
        outcome       text NOT NULL,
        answered_at   timestamptz NOT NULL
    )
    """)
