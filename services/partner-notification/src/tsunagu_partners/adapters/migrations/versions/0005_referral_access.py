"""Closed referrals, and the consent purposes that let a held event go (0005).

A closed case closes its partner referrals; reopening it gives them back their status. A held
event keeps the purposes the fan-out found it needs (routing.purposes_for), so that the sweep
releases it only under a consent for one of them; NULL: any permission lets it go.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    run_sql("""
    ALTER TABLE partner_referrals ADD COLUMN status_before_close text;
    ALTER TABLE held_events ADD COLUMN purposes text[]
    """)
