"""A contracts event travels from one FastStream application to another through the real broker."""

import asyncio
import uuid
from datetime import UTC, datetime

from faststream import FastStream
from faststream.kafka import KafkaMessage
from prometheus_client import CollectorRegistry

from tsunagu_contracts import ConsultationRegistered, NeedCategory, topic_for_event
from tsunagu_servicehost.app import build_broker
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import tracer_provider


def a_broker(name: str, bootstrap: str):
    settings = ServiceSettings(http_port=1, kafka_bootstrap=bootstrap, database_url="postgresql://unused@localhost/x")
    return build_broker(name, settings, CollectorRegistry(), tracer_provider(name))


async def test_an_event_published_by_one_app_is_decoded_and_handled_by_another(infrastructure):
    topic = topic_for_event(ConsultationRegistered).name
    sent = ConsultationRegistered(
        case_id=uuid.uuid4(), municipality_code="142166", occurred_at=datetime.now(UTC),
        consultation_id=uuid.uuid4(), person_ref=uuid.uuid4(),
        needs=(NeedCategory.HOUSING, NeedCategory.DEBT))
    handled: asyncio.Queue[tuple[ConsultationRegistered, KafkaMessage]] = asyncio.Queue()

    async def handle_consultation_registered(event: ConsultationRegistered, message: KafkaMessage) -> None:
        if event.case_id == sent.case_id:
            await handled.put((event, message))

    consumer_broker = a_broker("test-consumer", infrastructure.kafka_bootstrap)
    consumer_broker.subscriber(topic, group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest")(
        handle_consultation_registered)
    producer_broker = a_broker("test-producer", infrastructure.kafka_bootstrap)
    consumer, producer = FastStream(consumer_broker), FastStream(producer_broker)

    await consumer.start()
    await producer.start()
    try:
        await producer_broker.publish(sent, topic=topic, key=str(sent.case_id).encode())
        received, message = await asyncio.wait_for(handled.get(), 60)
    finally:
        await producer.stop()
        await consumer.stop()

    assert received == sent
    assert isinstance(received.needs[0], NeedCategory)
    assert message.raw_message.key == str(sent.case_id).encode()
    assert "traceparent" in message.headers, "the telemetry middleware carries the W3C trace context"
