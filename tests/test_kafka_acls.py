"""The broker fences every service and every partner in: each connects as its own SCRAM user and
may do only what the topic registry says (tsunagu_topics.acls). Real aiokafka clients against the
SCRAM broker; on a PLAINTEXT broker (the fault matrix's kind) there is nothing to check."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError, KafkaConnectionError, KafkaError, TopicAuthorizationFailedError,
)

from tsunagu_contracts import INTAKE_CASES, PARTNER_RESPONSES, REFERRALS, ConsultationRegistered, PartnerDeliveries, encode
from tsunagu_contracts.events import ConsentGranted
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_teststack.kafka_access import broker_access
from tsunagu_topics import KafkaCredentials, ensure_topics
from tsunagu_topics.acls import (
    partner_grants, provision_partner_access, registry_grants, remove_partner_access,
)
from tsunagu_partners.adapters.kafka_access import provision_partner, remove_partner

REFUSED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


@pytest.fixture(autouse=True)
def a_scram_broker(infrastructure):
    if infrastructure.kafka_admin is None:
        pytest.skip("the broker under test is PLAINTEXT: it has no users and no ACLs")


def example(event_type):
    return event_type.model_validate(event_type.model_json_schema()["examples"][0])


async def publish(bootstrap: str, options: dict, topic: str, event) -> None:
    record = encode(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers, partition=0)
    finally:
        await producer.stop()


async def read_one(bootstrap: str, options: dict, topic: str, group: str | None = None):
    """The first record of the topic (a namespace's topics hold only what the test wrote), as the given
    user; a group commits it too. The broker's refusal surfaces from getone()."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000, **options)
    await consumer.start()
    try:
        record = await consumer.getone()
        if group:
            await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
        return record
    finally:
        await consumer.stop()


async def test_the_brokers_acls_are_exactly_what_the_topic_registry_derives(infrastructure, kafka_namespace):
    on_broker = await asyncio.to_thread(broker_access(infrastructure).grants)
    ours = {g for g in on_broker if g.principal.startswith(f"User:{kafka_namespace}")}

    assert ours == registry_grants(kafka_namespace)


async def test_referral_may_not_write_intakes_topic(infrastructure, kafka_namespace, namespace_access):
    referral = namespace_access.credentials("referral").aiokafka()

    with pytest.raises(TopicAuthorizationFailedError):
        await publish(infrastructure.kafka_bootstrap, referral, kafka_namespace + INTAKE_CASES.name,
                      example(ConsentGranted))


async def test_each_service_writes_its_own_topic_and_reads_what_it_consumes_in_its_own_group(
        infrastructure, kafka_namespace, namespace_access):
    topic = kafka_namespace + INTAKE_CASES.name
    await publish(infrastructure.kafka_bootstrap, namespace_access.credentials("intake").aiokafka(), topic,
                  example(ConsultationRegistered))

    record = await read_one(infrastructure.kafka_bootstrap, namespace_access.credentials("referral").aiokafka(),
                            topic, group=f"{kafka_namespace}tsunagu-referral")

    assert record.topic == topic


async def test_a_service_may_not_read_in_another_services_consumer_group(
        infrastructure, kafka_namespace, namespace_access):
    topic = kafka_namespace + REFERRALS.name
    await publish(infrastructure.kafka_bootstrap, infrastructure.kafka_options, topic, example(ConsultationRegistered))

    with pytest.raises(REFUSED):
        await read_one(infrastructure.kafka_bootstrap, namespace_access.credentials("intake").aiokafka(), topic,
                       group=f"{kafka_namespace}tsunagu-referral")


async def test_a_forged_consent_from_an_unauthenticated_client_is_refused(infrastructure, kafka_namespace):
    with pytest.raises(KafkaError):
        await publish(infrastructure.kafka_bootstrap, {}, kafka_namespace + INTAKE_CASES.name, example(ConsentGranted))


async def test_a_forged_consent_with_a_wrong_password_is_refused(infrastructure, kafka_namespace, namespace_access):
    intake = namespace_access.credentials("intake")
    wrong = KafkaCredentials(intake.username, intake.password + "x").aiokafka()

    # aiokafka reports the broker's SaslAuthenticationFailed as being unable to bootstrap.
    with pytest.raises(KafkaConnectionError):
        await publish(infrastructure.kafka_bootstrap, wrong, kafka_namespace + INTAKE_CASES.name, example(ConsentGranted))


@pytest.fixture
async def two_partners(infrastructure, kafka_namespace):
    """Partners A and B with their own delivery topics and users, each holding one record."""
    access = broker_access(infrastructure)
    partners = {}
    for name in ("a", "b"):
        partner_id = uuid.uuid4()
        topic = PartnerDeliveries.for_partner(partner_id)
        await ensure_topics(infrastructure.kafka_bootstrap, [topic], namespace=kafka_namespace,
                            credentials=infrastructure.kafka_admin)
        await publish(infrastructure.kafka_bootstrap, infrastructure.kafka_options, kafka_namespace + topic.name,
                      example(ConsultationRegistered))
        credentials = await asyncio.to_thread(provision_partner_access, access, partner_id, kafka_namespace)
        partners[name] = (partner_id, kafka_namespace + topic.name, credentials)
    yield partners
    for partner_id, _, _ in partners.values():
        await asyncio.to_thread(remove_partner_access, access, partner_id, kafka_namespace)


async def test_a_partner_reads_its_own_topic_in_a_group_under_its_own_prefix(infrastructure, kafka_namespace,
                                                                             two_partners):
    partner_id, topic, credentials = two_partners["a"]
    group = kafka_namespace + PartnerDeliveries.acl_prefix(partner_id) + "reader"

    record = await read_one(infrastructure.kafka_bootstrap, credentials.aiokafka(), topic, group=group)

    assert record.topic == topic


async def test_partner_a_cannot_read_partner_bs_topic(infrastructure, two_partners):
    _, _, a = two_partners["a"]
    _, b_topic, _ = two_partners["b"]

    with pytest.raises(REFUSED):
        await read_one(infrastructure.kafka_bootstrap, a.aiokafka(), b_topic)


@pytest.mark.parametrize("shared", [INTAKE_CASES, REFERRALS, PARTNER_RESPONSES], ids=lambda t: t.name)
async def test_a_partner_cannot_read_any_shared_topic(infrastructure, kafka_namespace, two_partners, shared):
    _, _, a = two_partners["a"]
    await publish(infrastructure.kafka_bootstrap, infrastructure.kafka_options, kafka_namespace + shared.name,
                  example(ConsultationRegistered))

    with pytest.raises(REFUSED):
        await read_one(infrastructure.kafka_bootstrap, a.aiokafka(), kafka_namespace + shared.name)


async def test_a_forged_consent_with_partner_credentials_is_refused(infrastructure, kafka_namespace, two_partners):
    _, own_topic, a = two_partners["a"]

    for topic in (kafka_namespace + INTAKE_CASES.name, own_topic):
        with pytest.raises(TopicAuthorizationFailedError):
            await publish(infrastructure.kafka_bootstrap, a.aiokafka(), topic, example(ConsentGranted))


def partner_notification_settings(infrastructure, kafka_namespace, namespace_access) -> ServiceSettings:
    own = namespace_access.credentials("partner-notification")
    return ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/x",
                           kafka_bootstrap=infrastructure.kafka_bootstrap, topic_namespace=kafka_namespace,
                           kafka_username=own.username, kafka_password=own.password)


async def test_partner_notification_provisions_a_partner_with_its_own_rights_and_removal_locks_it_out(
        infrastructure, kafka_namespace, namespace_access):
    settings = partner_notification_settings(infrastructure, kafka_namespace, namespace_access)
    partner_id = uuid.uuid4()
    topic = PartnerDeliveries.for_partner(partner_id)
    await ensure_topics(infrastructure.kafka_bootstrap, [topic], namespace=kafka_namespace,
                        credentials=settings.kafka_credentials)
    await publish(infrastructure.kafka_bootstrap, settings.kafka_options, kafka_namespace + topic.name,
                  example(ConsultationRegistered))

    credentials = await provision_partner(settings, partner_id)
    granted = await asyncio.to_thread(broker_access(infrastructure).grants, f"User:{credentials.username}")
    assert granted == partner_grants(partner_id, kafka_namespace)
    assert (await read_one(infrastructure.kafka_bootstrap, credentials.aiokafka(), kafka_namespace + topic.name)).value

    await remove_partner(settings, partner_id)
    await remove_partner(settings, partner_id)  # removing again is not an error

    assert await asyncio.to_thread(broker_access(infrastructure).grants, f"User:{credentials.username}") == set()
    with pytest.raises(KafkaError):
        await read_one(infrastructure.kafka_bootstrap, credentials.aiokafka(), kafka_namespace + topic.name)


async def test_a_partner_registered_with_its_own_topic_gets_a_user_that_deactivation_removes(
        infrastructure, kafka_namespace, service_process, auth_headers):
    import httpx

    partners = await service_process("partner-notification")
    async with httpx.AsyncClient(base_url=partners.url, timeout=60, headers=auth_headers("coordinator")) as client:
        registered = await client.post("/v1/partners", json={
            "name": "ざまフードバンク", "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "kafka_topic": True})
        assert registered.status_code == 201, registered.text
        partner_id = uuid.UUID(registered.json()["partner_id"])
        user = registered.json()["kafka_credentials"]["username"]
        granted = await asyncio.to_thread(broker_access(infrastructure).grants, f"User:{user}")

        deactivated = await client.post(f"/v1/partners/{partner_id}/deactivate")

    assert granted == partner_grants(partner_id, kafka_namespace)
    assert deactivated.status_code == 200, deactivated.text
    assert await asyncio.to_thread(broker_access(infrastructure).grants, f"User:{user}") == set()
