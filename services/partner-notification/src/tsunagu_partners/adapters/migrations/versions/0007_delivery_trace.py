"""The trace a delivery belongs to (0007).

A delivery keeps the W3C traceparent of the event that queued it, so each attempt to send it, and
each retry hours later, is a span of the case's trace. NULL for deliveries queued before.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    run_sql("ALTER TABLE deliveries ADD COLUMN traceparent text")
