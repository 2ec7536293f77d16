"""The outbox relay publishes a batch of many cases through the real broker at once, and every
case's records arrive in the order they were committed."""

import json
import uuid

import asyncpg
import pytest
from faststream import FastStream
from prometheus_client import CollectorRegistry

from tsunagu_contracts import ConsultationRegistered, topic_for_event
from tsunagu_outbox import ATTEMPT_STATEMENTS, SCHEMA_STATEMENTS, OutboxRelay, RelayPolicy
from tsunagu_servicehost.app import build_broker
from tsunagu_servicehost.publishing import publish_record
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import tracer_provider

pytestmark = pytest.mark.stack
CASES, RECORDS_PER_CASE = 30, 4


def intake_broker(infrastructure, namespace_access):
    """intake's broker as `serve` builds it, connecting as intake's Kafka user."""
    credentials = namespace_access.credentials("intake")
    security = {"kafka_username": credentials.username, "kafka_password": credentials.password} if credentials \
        else {"kafka_security_protocol": "PLAINTEXT"}
    settings = ServiceSettings(http_port=1, kafka_bootstrap=infrastructure.kafka_bootstrap,
                               database_url="postgresql://unused@localhost/x", **security)
    return build_broker("intake", settings, CollectorRegistry(), tracer_provider("intake"))


async def test_one_batch_of_many_cases_is_published_and_each_case_arrives_in_commit_order(
        infrastructure, kafka_namespace, namespace_access, scratch_database):
    topic = topic_for_event(ConsultationRegistered).name
    cases = [str(uuid.uuid4()) for _ in range(CASES)]
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=2)
    broker = intake_broker(infrastructure, namespace_access)
    app = FastStream(broker)
    await app.start()
    try:
        async with pool.acquire() as conn:
            for statement in SCHEMA_STATEMENTS + ATTEMPT_STATEMENTS:
                await conn.execute(statement)
            # Committed case by case interleaved, as many consultations at once write them.
            await conn.executemany(
                "INSERT INTO outbox (event_id, topic, record_key, headers, value) VALUES ($1, $2, $3, $4, $5)",
                [(uuid.uuid4(), topic, case, json.dumps({"ce_type": "tsunagu.test.v1", "ce_subject": case}),
                  json.dumps({"n": n}).encode()) for n in range(RECORDS_PER_CASE) for case in cases])
        relay = OutboxRelay(pool, lambda name, record: publish_record(broker, kafka_namespace + name, record),
                            policy=RelayPolicy(publish_timeout_s=30))

        async with pool.acquire() as conn:
            published = await relay.drain(conn)
        unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await app.stop()
        await pool.close()

    assert published == CASES * RECORDS_PER_CASE, "the whole batch in one drain"
    assert unpublished == 0
    records = await infrastructure.read_records(kafka_namespace + topic, CASES * RECORDS_PER_CASE)
    arrived = {case: [json.loads(r.value)["n"] for r in records if r.key.decode() == case] for case in cases}
    assert arrived == {case: list(range(RECORDS_PER_CASE)) for case in cases}, "each case's records in order"
