"""A contracts event travels from one service's outbox publisher to another service's FastStream
application through the real broker, as a CloudEvents record, and arrives decoded, typed and with
its trace context."""

import asyncio
import uuid

from faststream import FastStream
from faststream.kafka import KafkaMessage
from prometheus_client import CollectorRegistry

from tsunagu_contracts import ConsultationRegistered, Envelope, decode, encode, topic_for_event
from tsunagu_servicehost.app import build_broker
from tsunagu_servicehost.publishing import OutboxPublisher
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import tracer_provider
from tsunagu_topics import KafkaCredentials, aiokafka_options

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def a_broker(name: str, bootstrap: str, credentials: KafkaCredentials | None):
    """A service's broker as `serve` builds it, connecting as that service's Kafka user."""
    security = {"kafka_username": credentials.username, "kafka_password": credentials.password} if credentials \
        else {"kafka_security_protocol": "PLAINTEXT"}
    settings = ServiceSettings(http_port=1, kafka_bootstrap=bootstrap, database_url="postgresql://unused@localhost/x",
                               **security)
    return build_broker(name, settings, CollectorRegistry(), tracer_provider(name))


def a_consultation() -> ConsultationRegistered:
    example = ConsultationRegistered.model_json_schema()["examples"][0]
    return ConsultationRegistered.model_validate({**example, "case_id": str(uuid.uuid4())})


async def test_an_event_published_by_one_app_is_decoded_and_handled_by_another(
        infrastructure, kafka_namespace, namespace_access):
    topic = kafka_namespace + topic_for_event(ConsultationRegistered).name
    sent = a_consultation()
    record = encode(sent, traceparent=TRACEPARENT)
    handled: asyncio.Queue[tuple[Envelope, KafkaMessage]] = asyncio.Queue()

    async def handle_consultation_registered(envelope: Envelope, message: KafkaMessage) -> None:
        if envelope.data.case_id == sent.case_id:
            await handled.put((envelope, message))

    consumer_broker = a_broker("referral", infrastructure.kafka_bootstrap, namespace_access.credentials("referral"))

    @consumer_broker.subscriber(topic, group_id=f"{kafka_namespace}tsunagu-referral-{uuid.uuid4()}",
                                auto_offset_reset="earliest")
    async def on_record(message: KafkaMessage) -> None:
        await handle_consultation_registered(decode(message.raw_message.headers, message.body), message)

    publisher = OutboxPublisher(infrastructure.kafka_bootstrap, "tsunagu-intake-outbox",
                                tracer_provider("intake").get_tracer("tsunagu.intake.outbox"),
                                aiokafka_options(namespace_access.credentials("intake")))
    consumer = FastStream(consumer_broker)
    await consumer.start()
    await publisher.start()
    try:
        await publisher.publish(topic, [record])
        envelope, message = await asyncio.wait_for(handled.get(), 60)
    finally:
        await publisher.stop()
        await consumer.stop()

    assert envelope.data == sent
    assert envelope.source == "/tsunagu/intake"
    assert message.raw_message.key == str(sent.case_id).encode()
    assert envelope.traceparent.split("-")[1] == TRACEPARENT.split("-")[1], "one trace follows the case"
    assert envelope.traceparent.split("-")[2] != TRACEPARENT.split("-")[2], "its parent is the publish's own span"
