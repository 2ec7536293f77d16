"""Rotated credentials and deactivated partners (0008).

A rotation keeps the credential it replaces beside the new one until `previous_*_valid_until`:
the API token's hash, and the sealed webhook secret each webhook is then also signed with. A
deactivated partner (`deactivated_at`) keeps its history; its undelivered deliveries are marked
'cancelled' rather than deleted.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    run_sql("""
    ALTER TABLE partners ADD COLUMN previous_api_token_hash bytea UNIQUE;
    ALTER TABLE partners ADD COLUMN previous_api_token_valid_until timestamptz;
    ALTER TABLE partners ADD COLUMN previous_webhook_secret bytea;
    ALTER TABLE partners ADD COLUMN previous_webhook_secret_valid_until timestamptz;
    ALTER TABLE partners ADD COLUMN deactivated_at timestamptz
    """)
