"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_contracts import Envelope, Event, KafkaRecord, encode, topic_for_event

NOTIFY_CHANNEL = "tsunagu_outbox"
_propagator = TraceContextTextMapPropagator()


def current_trace_context() -> dict[str, str]:
    """The W3C trace context of the span that caused the write (an HTTP request, a consumed event)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


async def append(conn: asyncpg.Connection, *events: Event, source: str | None = None, topic: str | None = None,
                 event_id: UUID | None = None) -> list[Envelope]:
    """Store `events` for publishing; call inside the transaction that makes the change they report.
    Returns each event with the id and source it is published under, in order.

    By default each event goes to the topic the registry names for it; `topic` and `event_id` send
    an already published event on to another topic under its own id (a partner's delivery topic).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.append must run inside the transaction of the change it reports")
    if not events:
        return []
    trace = current_trace_context()
    rows, stored = [], []
    for event in events:
        record = encode(event, source=source, event_id=event_id, traceparent=trace.get("traceparent"),
                        tracestate=trace.get("tracestate"))
        headers = {name: value.decode() for name, value in record.headers}
        rows.append((headers["ce_id"], topic or topic_for_event(event).name, record.key.decode(), json.dumps(headers),
                     record.value, trace.get("traceparent")))
        stored.append(Envelope(data=event, id=UUID(headers["ce_id"]), source=headers["ce_source"]))
    # One statement, one round trip: the rows in the given order (ids follow it, and the relay keeps
    # each lane in id order), and the relay woken. NOTIFY is delivered on commit only, so the relay
    # never sees a row before it is visible.
    await conn.execute(_APPEND, *map(list, zip(*rows, strict=True)), NOTIFY_CHANNEL)
    return stored


def record_of(row: asyncpg.Record) -> KafkaRecord:
    """An outbox row (its `record_key`, `headers` and `value`) as the record it is published as."""
    headers = json.loads(row["headers"])
    return KafkaRecord(key=row["record_key"].encode(), value=bytes(row["value"]),
                       headers=[(k, v.encode()) for k, v in headers.items()])


_APPEND = """
WITH appended AS (
    INSERT INTO outbox (event_id, topic, record_key, headers, value, traceparent)
    SELECT r.event_id, r.topic, r.record_key, r.headers, r.value, r.traceparent
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::text[])
         WITH ORDINALITY AS r (event_id, topic, record_key, headers, value, traceparent, n)
    ORDER BY r.n
    RETURNING 1)
SELECT pg_notify($7, '') FROM (SELECT 1 FROM appended LIMIT 1) AS some_row
"""
