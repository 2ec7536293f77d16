"""A consumer commits the offsets of the records it applied in few, coalesced commits, on the real
broker and PostgreSQL: every applied record's offset is committed, soon or when the consumer stops,
and a record the database could not apply is delivered again until it is."""

import asyncio
import uuid
from types import SimpleNamespace

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, encode
from tsunagu_servicehost.app import Runtime, build_broker
from tsunagu_servicehost.consumer import EventConsumer
from tsunagu_servicehost.lag import KafkaOffsets
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_teststack.waiting import eventually
from tsunagu_telemetry import tracer_provider

pytestmark = pytest.mark.stack
RECORDS = 300


def consultations(n: int) -> list[ConsultationRegistered]:
    example = ConsultationRegistered.model_json_schema()["examples"][0]
    return [ConsultationRegistered.model_validate({**example, "case_id": str(uuid.uuid4())}) for _ in range(n)]


async def publish(infrastructure, namespace: str, events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options,
                                enable_idempotence=True)
    await producer.start()
    try:
        records = [encode(event) for event in events]
        await asyncio.gather(*[await producer.send(namespace + INTAKE_CASES.name, record.value, key=record.key,
                                                   headers=list(record.headers)) for record in records])
    finally:
        await producer.stop()


async def not_yet_committed(infrastructure, namespace: str) -> float:
    """referral's lag on the intake topic, as its /metrics reports it: records not applied and committed."""
    registry = CollectorRegistry()
    offsets = KafkaOffsets(registry, infrastructure.kafka_bootstrap, "test-lag", group=f"{namespace}tsunagu-referral",
                           topics=[namespace + INTAKE_CASES.name], dead_letter_topic=namespace + "none",
                           dead_letter_group="none", options=infrastructure.kafka_options)
    try:
        await offsets.refresh(timeout=10)
    finally:
        await offsets.stop()
    lag = [sample.value for metric in offsets.lag.collect() for sample in metric.samples]
    assert lag, "the lag was read"
    return sum(lag)


class ReferralConsumer:
    """referral's consumer of the intake topic, in this process: its broker, its database, its group."""

    def __init__(self, infrastructure, namespace: str, credentials, database_url: str):
        security = {"kafka_username": credentials.username, "kafka_password": credentials.password} if credentials \
            else {"kafka_security_protocol": "PLAINTEXT"}
        self.settings = ServiceSettings(http_port=1, kafka_bootstrap=infrastructure.kafka_bootstrap,
                                        database_url=database_url, topic_namespace=namespace,
                                        consumer_pause_first_s=0.05, consumer_pause_max_s=0.1, **security)
        registry = CollectorRegistry()
        self.runtime = Runtime(SimpleNamespace(name="referral"), self.settings,
                               build_broker("referral", self.settings, registry, tracer_provider("referral")),
                               registry, tracer_provider=None, tokens=None, signer=None)
        self.runtime.consumed = Counter("consumed", "", ["consumer", "topic", "outcome"], registry=registry)
        self.deliveries = 0
        self.consumer = EventConsumer(self.runtime, INTAKE_CASES, {ConsultationRegistered: self.applied})
        self.commits = 0

    async def applied(self, conn, envelope) -> None:
        pass

    async def start(self, pool) -> None:
        self.runtime.pool = pool
        self.consumer.subscribe()
        await self.runtime.broker.start()
        [subscriber] = self.runtime.broker.subscribers
        kafka_consumer = subscriber.consumer
        commit = kafka_consumer.commit

        async def counted(*args, **kwargs):
            self.commits += 1
            return await commit(*args, **kwargs)

        kafka_consumer.commit = counted

    async def stop(self) -> None:
        await self.runtime.stop_consuming()
        await self.runtime.broker.stop()


@pytest.fixture
async def referral_database(migrated_database):
    url = await migrated_database("referral")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def applied_events(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM applied_events WHERE consumer = 'referral'")


async def test_a_consumer_commits_far_fewer_times_than_it_applies_records_and_commits_them_all(
        infrastructure, kafka_namespace, namespace_access, referral_database):
    await publish(infrastructure, kafka_namespace, consultations(RECORDS))
    referral = ReferralConsumer(infrastructure, kafka_namespace, namespace_access.credentials("referral"),
                                "postgresql://unused@localhost/x")
    await referral.start(referral_database)
    try:
        await eventually(lambda: applied_events(referral_database), until=lambda n: n == RECORDS)
        await eventually(lambda: not_yet_committed(infrastructure, kafka_namespace), until=lambda n: n == 0)
    finally:
        await referral.stop()

    print(f"{referral.commits} offset commits for {RECORDS} records")
    assert referral.commits <= RECORDS / 10, f"{referral.commits} commits for {RECORDS} records"


async def test_a_consumer_stopped_right_after_applying_records_leaves_their_offsets_committed(
        infrastructure, kafka_namespace, namespace_access, referral_database):
    await publish(infrastructure, kafka_namespace, consultations(50))
    referral = ReferralConsumer(infrastructure, kafka_namespace, namespace_access.credentials("referral"),
                                "postgresql://unused@localhost/x")
    referral.consumer.offsets.interval = 3600  # no commit but the one on stopping
    await referral.start(referral_database)
    try:
        await eventually(lambda: applied_events(referral_database), until=lambda n: n == 50)
        assert referral.commits == 0
    finally:
        await referral.stop()

    assert referral.commits == 1
    assert await not_yet_committed(infrastructure, kafka_namespace) == 0


async def test_a_record_the_database_cannot_apply_is_delivered_again_and_committed_once_applied(
        infrastructure, kafka_namespace, namespace_access, referral_database):
    await publish(infrastructure, kafka_namespace, consultations(1))
    referral = ReferralConsumer(infrastructure, kafka_namespace, namespace_access.credentials("referral"),
                                "postgresql://unused@localhost/x")
    unreachable = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=0, timeout=1)
    deliveries = 0
    on_message = referral.consumer.on_message

    async def counted(message):
        nonlocal deliveries
        deliveries += 1
        await on_message(message)

    referral.consumer.on_message = counted
    await referral.start(unreachable)
    try:
        await eventually(lambda: asyncio.sleep(0, deliveries), until=lambda n: n >= 3)
        assert await not_yet_committed(infrastructure, kafka_namespace) == 1, "nothing committed while paused"
        referral.runtime.pool = referral_database  # the database answers again

        await eventually(lambda: applied_events(referral_database), until=lambda n: n == 1)
        await eventually(lambda: not_yet_committed(infrastructure, kafka_namespace), until=lambda n: n == 0)
    finally:
        await referral.stop()
        await unreachable.close()
