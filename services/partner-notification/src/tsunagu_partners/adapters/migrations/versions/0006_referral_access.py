"""Closed referrals, and the consent purposes held events and deliveries need (0006).

A closed case closes its partner referrals; reopening it gives them back their status. A held
event and a delivery keep the purposes the fan-out found the event needs (routing.purposes_for):
the sweep releases a held event, and a withdrawal leaves a delivery pending, only under a consent
for one of them. NULL: any permission will do.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    run_sql("""
    ALTER TABLE partner_referrals ADD COLUMN status_before_close text;
    ALTER TABLE held_events ADD COLUMN purposes text[];
    ALTER TABLE deliveries ADD COLUMN purposes text[]
    """)
