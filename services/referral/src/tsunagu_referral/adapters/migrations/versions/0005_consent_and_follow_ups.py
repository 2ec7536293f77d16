"""What lets a partner keep a referral, withdrawn referrals at the top of the queue, the counter that
registered each case, and follow-ups with the person (0005).

- `permissions`: the consents and statutory-basis grants partners hold per case, from intake's
  events, so that a withdrawal or an ending can tell which partner referrals no longer rest on any.
- The coordinators' queue puts `withdrawn` referrals (consent withdrawn, basis ended) beside the
  unreachable ones, first.
- `sheets.counter`: the counter that registered the case asks the person whether help arrived.
- `follow_ups`: one per referral accepted (rescheduled when it completes, until it falls due).
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE permissions (
        grant_id     uuid PRIMARY KEY,          -- a consent id, or a statutory basis grant's id
        case_id      uuid NOT NULL,
        partner_id   uuid NOT NULL,
        basis        text NOT NULL,             -- 'consent' or a LegalBasis code
        purpose      text NOT NULL,
        valid_until  date,
        ended_at     timestamptz
    );
    CREATE INDEX permissions_by_case ON permissions (case_id, partner_id);

    DROP INDEX referrals_queue;
    CREATE INDEX referrals_queue ON referrals
        ((status IN ('unreachable', 'withdrawn')) DESC, (overdue_at IS NOT NULL) DESC, accept_by, requested_at);

    ALTER TABLE sheets ADD COLUMN counter text;

    CREATE TABLE follow_ups (
        follow_up_id          uuid PRIMARY KEY,
        referral_id           uuid NOT NULL UNIQUE REFERENCES referrals,
        case_id               uuid NOT NULL REFERENCES sheets (case_id),
        need                  text NOT NULL,
        counter               text NOT NULL,
        due_on                date NOT NULL,
        answer_by             timestamptz NOT NULL,
        opened_at             timestamptz,   -- when FollowUpDue was published; none while scheduled
        outcome               text,
        answered_at           timestamptz,
        answered_by           text,
        reopened_referral_id  uuid
    );
    CREATE INDEX follow_ups_scheduled ON follow_ups (due_on) WHERE opened_at IS NULL;
    CREATE INDEX follow_ups_open ON follow_ups (answer_by) WHERE opened_at IS NOT NULL AND answered_at IS NULL;
    """)
