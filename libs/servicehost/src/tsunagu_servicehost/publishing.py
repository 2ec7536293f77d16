"""Publishing a CloudEvents record so that its trace continues where the event was caused."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_contracts import KafkaRecord

_propagator = TraceContextTextMapPropagator()


async def publish_record(broker: KafkaBroker, topic: str, record: KafkaRecord, tracer: Tracer | None = None) -> None:
    """Publish `record` as is. When it carries a `traceparent` (stored with an outbox row, say), the
    publish joins that trace, and the telemetry middleware writes the continued context; with a
    `tracer`, a span for the relay's hop (commit to publish) names the event by id, type and case."""
    headers = {name: value.decode() for name, value in record.headers}
    token = otel_context.attach(_propagator.extract(headers)) if "traceparent" in headers else None
    try:
        if tracer is None:
            await broker.publish(record.value, topic=topic, key=record.key, headers=headers)
            return
        with tracer.start_as_current_span(f"outbox relay {headers.get('ce_type', '')}".rstrip(), attributes={
                "tsunagu.event_id": headers.get("ce_id", ""), "tsunagu.event_type": headers.get("ce_type", ""),
                "tsunagu.case_id": headers.get("ce_subject", "")}):
            await broker.publish(record.value, topic=topic, key=record.key, headers=headers)
    finally:
        if token is not None:
            otel_context.detach(token)


async def topic_exists(broker: KafkaBroker, topic: str) -> bool:
    """Whether the broker has `topic`; asked only after a publish failed, to tell why."""
    return topic in await broker.config.admin_client.list_topics()
