"""Outbox and applied-event tables.

Revision ID: 0001
"""

from alembic import op

from tsunagu_outbox import SCHEMA_STATEMENTS

revision = "0001"
down_revision = None


def upgrade() -> None:
    for statement in SCHEMA_STATEMENTS:
        op.execute(statement)
