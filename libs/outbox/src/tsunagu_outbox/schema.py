"""Tables every service needs to publish and consume exactly once.

`outbox` holds the records a transaction emits, written in that same transaction and published
afterwards by the relay. `applied_events` records, in the transaction of the effect, which event
a consumer applied, so a redelivered record changes nothing. Services create them in their first
migration (`SCHEMA_STATEMENTS`) and give the outbox its attempt columns in a later one
(`ATTEMPT_STATEMENTS`); both bodies are shared, so every service's outbox has the same shape.
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

# What the relay knows of a row it could not publish: how often it failed and why, when to try it
# again, and since when it is parked (it gave up after its attempts and moved on to other rows).
ATTEMPT_STATEMENTS: tuple[str, ...] = (
    """
    ALTER TABLE outbox
        ADD COLUMN attempts         int NOT NULL DEFAULT 0,
        ADD COLUMN next_attempt_at  timestamptz,
        ADD COLUMN last_error       text,
        ADD COLUMN parked_at        timestamptz
    """,
    # A row waits for the earlier unpublished rows of its topic and record key (its lane).
    "CREATE INDEX outbox_unpublished_by_lane ON outbox (topic, record_key, id) WHERE published_at IS NULL",
)
