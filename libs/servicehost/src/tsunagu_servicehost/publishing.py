"""The service's own producer of records as they are (its outbox and its dead letters), and publishing
the outbox's CloudEvents records so that each case's records arrive whole and in order, and each
record's trace continues where the event was caused."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_contracts import KafkaRecord

_propagator = TraceContextTextMapPropagator()

MAX_REQUEST_BYTES = 1_048_576
"""The largest produce request the relay's producer sends (aiokafka's default): a run of records that
would not fit in one is published one record at a time."""


class ServiceProducer:
    """An idempotent producer of the service's own, with its Kafka user, that sends records as they
    are given (keys, values and header bytes untouched). Started with the application, stopped after
    the last task that writes through it."""

    def __init__(self, bootstrap: list[str], client_id: str, options: dict[str, str] | None = None,
                 **producer_options: int):
        self.bootstrap, self.client_id, self.options = bootstrap, client_id, options or {}
        self.producer_options = producer_options
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                         enable_idempotence=True, **self.producer_options, **self.options)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    @property
    def started(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError(f"{type(self).__name__} is started with the application")
        return self.producer


class OutboxPublisher(ServiceProducer):
    """Publishes a run of records of one key as one record batch to the key's partition.

    The broker appends a record batch whole or not at all: the records of one case reach their
    partition in their order, with no gap, in one produce request, and a consumer gets them in one
    fetch. The partition is the one Kafka's default partitioner gives the key (murmur2, as every
    Kafka client): the records of a case published before and after stay on one partition.

    FastStream's publisher sends one record per call, hence a producer of its own. Each record's
    publish is a PRODUCER span named `outbox relay <event type>`, continuing the trace stored with
    its outbox row; the span's context replaces the record's `traceparent`, so the spans of its
    consumers follow it."""

    def __init__(self, bootstrap: list[str], client_id: str, tracer: Tracer, options: dict[str, str] | None = None):
        super().__init__(bootstrap, client_id, options, max_request_size=MAX_REQUEST_BYTES,
                         max_batch_size=MAX_REQUEST_BYTES)
        self.tracer = tracer
        self.partitioner = DefaultPartitioner()

    async def publish(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        """Publish `records`, all of one key, together: all or none, in their order. Raises
        MessageSizeTooLargeError when they do not fit in one produce request."""
        producer = self.started
        key = records[0].key
        if any(record.key != key for record in records):
            raise ValueError("records published together share one key")
        partitions = sorted(await producer.partitions_for(topic))
        partition = self.partitioner(key, partitions, partitions)
        batch = producer.create_batch()
        spans = []
        try:
            for record in records:
                headers = {name: value.decode() for name, value in record.headers}
                span = self.tracer.start_span(
                    f"outbox relay {headers.get('ce_type', '')}".rstrip(), kind=SpanKind.PRODUCER,
                    context=_propagator.extract(headers) if "traceparent" in headers else None, attributes={
                        "messaging.system": "kafka", "messaging.operation": "publish",
                        "messaging.destination.name": topic, "messaging.kafka.destination.partition": partition,
                        "tsunagu.event_id": headers.get("ce_id", ""), "tsunagu.event_type": headers.get("ce_type", ""),
                        "tsunagu.case_id": headers.get("ce_subject", "")})
                spans.append(span)
                _propagator.inject(headers, context=trace.set_span_in_context(span))
                if batch.append(key=key, value=record.value, timestamp=None,
                                headers=[(name, value.encode()) for name, value in headers.items()]) is None:
                    raise MessageSizeTooLargeError(f"{len(records)} records do not fit in one produce request")
            if batch.size() > MAX_REQUEST_BYTES:
                raise MessageSizeTooLargeError(f"the records are {batch.size()} bytes, more than one produce "
                                               f"request's {MAX_REQUEST_BYTES}")
            await (await producer.send_batch(batch, topic, partition=partition))
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()


async def topic_exists(broker: KafkaBroker, topic: str) -> bool:
    """Whether the broker has `topic`; asked only after a publish failed, to tell why."""
    return topic in await broker.config.admin_client.list_topics()
