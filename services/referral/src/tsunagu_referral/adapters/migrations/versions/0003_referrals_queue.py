"""The coordinators' queue order: unreachable referrals first, then overdue ones (0003).

A referral whose request never reached its partner is marked `unreachable` (a status: no column
changes); this index serves the queue's order without sorting the whole table.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    run_sql("""
    CREATE INDEX referrals_queue ON referrals
        ((status = 'unreachable') DESC, (overdue_at IS NOT NULL) DESC, accept_by, requested_at)
    """)
