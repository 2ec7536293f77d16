"""A closed case closes its partner referrals; reopening it gives them back their status (0005)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    run_sql("""
    ALTER TABLE partner_referrals ADD COLUMN status_before_close text
    """)
