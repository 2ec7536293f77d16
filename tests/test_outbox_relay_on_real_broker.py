"""The outbox relay publishes a batch of many cases through the real broker at once, and every
case's records arrive together, in the order they were committed."""

import json
import uuid

import asyncpg
import pytest

from tsunagu_contracts import ConsultationRegistered, topic_for_event
from tsunagu_outbox import ATTEMPT_STATEMENTS, SCHEMA_STATEMENTS, OutboxRelay, RelayPolicy
from tsunagu_servicehost.publishing import OutboxPublisher
from tsunagu_telemetry import tracer_provider
from tsunagu_topics import aiokafka_options

pytestmark = pytest.mark.stack
CASES, RECORDS_PER_CASE = 30, 4


def intake_publisher(infrastructure, namespace_access) -> OutboxPublisher:
    """intake's outbox publisher as `serve` builds it, connecting as intake's Kafka user."""
    return OutboxPublisher(infrastructure.kafka_bootstrap, "tsunagu-intake-outbox",
                           tracer_provider("intake").get_tracer("tsunagu.intake.outbox"),
                           aiokafka_options(namespace_access.credentials("intake")))


async def test_one_batch_of_many_cases_is_published_and_each_case_arrives_whole_in_commit_order(
        infrastructure, kafka_namespace, namespace_access, scratch_database):
    topic = topic_for_event(ConsultationRegistered).name
    cases = [str(uuid.uuid4()) for _ in range(CASES)]
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=2)
    publisher = intake_publisher(infrastructure, namespace_access)
    await publisher.start()
    try:
        async with pool.acquire() as conn:
            for statement in SCHEMA_STATEMENTS + ATTEMPT_STATEMENTS:
                await conn.execute(statement)
            # Committed case by case interleaved, as many consultations at once write them.
            await conn.executemany(
                "INSERT INTO outbox (event_id, topic, record_key, headers, value) VALUES ($1, $2, $3, $4, $5)",
                [(uuid.uuid4(), topic, case, json.dumps({"ce_type": "tsunagu.test.v1", "ce_subject": case}),
                  json.dumps({"n": n}).encode()) for n in range(RECORDS_PER_CASE) for case in cases])
        relay = OutboxRelay(pool, lambda name, records: publisher.publish(kafka_namespace + name, records),
                            policy=RelayPolicy(publish_timeout_s=30))

        async with pool.acquire() as conn:
            published = await relay.drain(conn)
        unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await publisher.stop()
        await pool.close()

    assert published == CASES * RECORDS_PER_CASE, "the whole batch in one drain"
    assert unpublished == 0
    records = await infrastructure.read_records(kafka_namespace + topic, CASES * RECORDS_PER_CASE)
    arrived = {case: [json.loads(r.value)["n"] for r in records if r.key.decode() == case] for case in cases}
    assert arrived == {case: list(range(RECORDS_PER_CASE)) for case in cases}, "each case's records in order"
    for case in cases:
        [partition] = {r.partition for r in records if r.key.decode() == case}
        offsets = [r.offset for r in records if r.key.decode() == case]
        assert offsets == list(range(offsets[0], offsets[0] + RECORDS_PER_CASE)), \
            f"{case}: one record batch, appended whole to partition {partition} (committed interleaved with others)"
