"""Publishing a CloudEvents record so that its trace continues where the event was caused."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_contracts import KafkaRecord

_propagator = TraceContextTextMapPropagator()


async def publish_record(broker: KafkaBroker, topic: str, record: KafkaRecord) -> None:
    """Publish `record` as is. When it carries a `traceparent` (stored with an outbox row, say), the
    publish span joins that trace, and the telemetry middleware writes the continued context."""
    headers = {name: value.decode() for name, value in record.headers}
    token = otel_context.attach(_propagator.extract(headers)) if "traceparent" in headers else None
    try:
        await broker.publish(record.value, topic=topic, key=record.key, headers=headers)
    finally:
        if token is not None:
            otel_context.detach(token)


async def topic_exists(broker: KafkaBroker, topic: str) -> bool:
    """Whether the broker has `topic`; asked only after a publish failed, to tell why."""
    return topic in await broker.config.admin_client.list_topics()
