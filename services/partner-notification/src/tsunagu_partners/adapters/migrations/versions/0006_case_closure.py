"""Referrals of a closed case take no answers until it is reopened (0006)."""

from tsunagu_servicehost.migrations import run_sql

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    run_sql("ALTER TABLE partner_referrals ADD COLUMN case_closed_at timestamptz")
