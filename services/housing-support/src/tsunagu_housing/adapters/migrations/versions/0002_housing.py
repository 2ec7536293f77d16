"""Council members, supports with their stages, tenancies, tasks, check-in rules and check-ins (0002).

The city's housing division (住宅課, the council's secretariat) is a member from the start, so a
housing referral always finds a lead even before any partner has joined.
"""

from alembic import op
from sqlalchemy import text

from tsunagu_servicehost.migrations import run_sql

revision = "0002"
down_revision = "0001"

SECRETARIAT = "0192f0c1-7a2e-7cc3-9a41-00000000c000"


def upgrade() -> None:
    run_sql("""
    -- Cases as referral announced them (ReferralSheetOpened): pseudonymous ids only.
    CREATE TABLE cases (
        case_id            uuid PRIMARY KEY,
        person_ref         uuid NOT NULL,
        municipality_code  text NOT NULL
    );

    CREATE TABLE members (
        member_id      uuid PRIMARY KEY,
        name           text NOT NULL,
        kind           text NOT NULL CHECK (kind IN ('division', 'partner')),
        division       text,
        partner_id     uuid,
        takes_on       text[] NOT NULL,
        registered_at  timestamptz NOT NULL,
        CHECK ((kind = 'division') = (division IS NOT NULL AND partner_id IS NULL))
    );
    -- One member per division and per partner: a second registration is refused, not doubled.
    CREATE UNIQUE INDEX members_one_per_division ON members (division) WHERE kind = 'division';
    CREATE UNIQUE INDEX members_one_per_partner ON members (partner_id) WHERE kind = 'partner';

    CREATE TABLE supports (
        support_id         uuid PRIMARY KEY,
        case_id            uuid NOT NULL,
        person_ref         uuid NOT NULL,
        municipality_code  text NOT NULL,
        referral_id        uuid,
        referred_at        timestamptz,
        stage              text NOT NULL,
        stage_since        timestamptz NOT NULL,
        lead_member_id     uuid NOT NULL REFERENCES members,
        opened_at          timestamptz NOT NULL,
        opened_by          text NOT NULL,
        ended_at           timestamptz,
        end_reason         text
    );
    -- A case has at most one support under way: the referral consumer and a council member opening
    -- one by hand for the same case race on this index, and the second finds the first.
    CREATE UNIQUE INDEX supports_one_open_per_case ON supports (case_id) WHERE stage <> 'ended';
    CREATE INDEX supports_by_stage ON supports (stage, stage_since);
    CREATE INDEX supports_by_lead ON supports (lead_member_id) WHERE stage <> 'ended';

    CREATE TABLE stage_changes (
        support_id   uuid NOT NULL REFERENCES supports,
        changed_at   timestamptz NOT NULL,
        from_stage   text,
        to_stage     text NOT NULL,
        changed_by   text NOT NULL,
        reason       bytea,                   -- encrypted: free text may name people
        end_reason   text
    );
    CREATE INDEX stage_changes_by_support ON stage_changes (support_id, changed_at);

    CREATE TABLE tenancies (
        tenancy_id   uuid PRIMARY KEY,
        support_id   uuid NOT NULL UNIQUE REFERENCES supports,
        home         bytea NOT NULL,          -- encrypted: landlord and address
        moved_in_on  date NOT NULL,
        ended_on     date,
        end_reason   text
    );

    CREATE TABLE tasks (
        task_id     uuid PRIMARY KEY,
        support_id  uuid NOT NULL REFERENCES supports,
        member_id   uuid NOT NULL REFERENCES members,
        kind        text NOT NULL,
        due_on      date,
        assigned_at timestamptz NOT NULL,
        assigned_by text NOT NULL,
        done_at     timestamptz,
        done_by     text
    );
    CREATE INDEX tasks_by_support ON tasks (support_id);
    CREATE INDEX tasks_by_member ON tasks (member_id) WHERE done_at IS NULL;

    CREATE TABLE check_in_rules (
        rule_id        uuid PRIMARY KEY,
        support_id     uuid NOT NULL REFERENCES supports,
        kind           text NOT NULL,
        rrule          text NOT NULL,
        grace_minutes  int NOT NULL,
        due_at         timestamptz,           -- the earliest occurrence neither answered nor missed
        set_at         timestamptz NOT NULL
    );
    CREATE INDEX check_in_rules_due ON check_in_rules (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX check_in_rules_by_support ON check_in_rules (support_id);

    CREATE TABLE check_ins (
        check_in_id         uuid PRIMARY KEY,
        support_id          uuid NOT NULL REFERENCES supports,
        tenancy_id          uuid NOT NULL REFERENCES tenancies,
        kind                text,
        status              text NOT NULL CHECK (status IN ('recorded', 'missed')),
        result              text,
        member_id           uuid REFERENCES members,
        scheduled_for       timestamptz,
        at                  timestamptz NOT NULL,
        missed_occurrences  int NOT NULL DEFAULT 0,
        escalation          text,
        recorded_by         text NOT NULL
    );
    CREATE INDEX check_ins_by_support ON check_ins (support_id, at DESC);
    CREATE INDEX check_ins_by_time ON check_ins (at)
    """)
    op.get_bind().execute(
        text("INSERT INTO members (member_id, name, kind, division, takes_on, registered_at) "
             "VALUES (CAST(:id AS uuid), '住宅課（居住支援協議会事務局）', 'division', 'housing', "
             "ARRAY['house_hunting', 'check_ins'], now())"), {"id": SECRETARIAT})
