"""One check-in per `Idempotency-Key` of a support (0004).

A double tap on the console's check-in button sends the same request twice. `check_in_keys` holds
the key the first recording was sent with, written in that recording's transaction, so a repeat
finds the check-in it made and answers with it instead of recording a second one
(handlers/check_ins.py). The primary key (support, key) makes it a rule of the table.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    run_sql("""
    CREATE TABLE check_in_keys (
        support_id    uuid NOT NULL REFERENCES supports,
        key           text NOT NULL,
        request_hash  bytea NOT NULL,   -- who sent what: a key sent again with another request is refused
        check_in_id   uuid NOT NULL REFERENCES check_ins,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (support_id, key)
    )
    """)
