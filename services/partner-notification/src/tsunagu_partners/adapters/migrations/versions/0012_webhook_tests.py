"""When a partner's webhook was last sent a test event (0012).

`webhook_tested_at` is the per-partner rate limit of `POST /v1/partners/{id}/webhook/test`: one
UPDATE takes the slot only when the last test is old enough (adapters/registry.py), so every
instance of the service shares the one limit.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0012"
down_revision = "0009"


def upgrade() -> None:
    run_sql("ALTER TABLE partners ADD COLUMN webhook_tested_at timestamptz")
