"""Tables every service needs to publish and consume exactly once.

`outbox` holds the records a transaction emits, written in that same transaction and published
afterwards by the relay. `applied_events` records, in the transaction of the effect, which event
a consumer applied, so a redelivered record changes nothing. Services create them in their first
migration.
"""

SCHEMA_STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id      uuid        NOT NULL UNIQUE,
        topic         text        NOT NULL,
        record_key    text        NOT NULL,
        headers       jsonb       NOT NULL,
        value         bytea       NOT NULL,
        traceparent   text,
        created_at    timestamptz NOT NULL DEFAULT now(),
        published_at  timestamptz
    )
    """,
    # The relay reads unpublished rows in id order; the partial index stays small.
    "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
    """
    CREATE TABLE applied_events (
        consumer    text        NOT NULL,
        event_id    uuid        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    )
    """,
)
