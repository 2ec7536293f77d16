"""The webhook sender's claim reads only the due deliveries of each partner (0014).

`Deliveries.claim` joins each reachable partner to its deliveries that are pending or whose lease
ran out. With only `deliveries_due` (due rows, by time) and `deliveries_by_case` (every delivery,
by partner), PostgreSQL found a partner's due rows by reading all of that partner's deliveries:
each claim cost more as a partner's history grew (about 570 buffers a claim after 2,000 deliveries
to one partner). `deliveries_due_by_partner` holds the due rows alone, by partner and time.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    run_sql("""
    CREATE INDEX deliveries_due_by_partner ON deliveries (partner_id, next_attempt_at)
        WHERE status IN ('pending', 'sending')
    """)
