"""Whose fault is it? A consumer tells the database's faults from the record's.

A record that cannot be decoded, whatever bytes it holds, reaches the dead letters as it was read,
and the partition moves on.
"""

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, dead_letter_topic, encode, uuid7
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
NEEDS = ["rent_loan", "housing", "debt", "health"]


def a_consultation_event(case_id=None) -> ConsultationRegistered:
    example = ConsultationRegistered.model_json_schema()["examples"][0]
    return ConsultationRegistered.model_validate({**example, "case_id": str(case_id or uuid7()), "needs": NEEDS,
                                                  "primary_need": "rent_loan",
                                                  "occurred_at": datetime.now(UTC).isoformat()})


@pytest.fixture
async def producer(infrastructure):
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


async def publish(producer, namespace: str, event, *, value=None, headers=None, key=None) -> None:
    record = encode(event)
    await producer.send_and_wait(namespace + INTAKE_CASES.name, record.value if value is None else value,
                                 key=key or record.key, headers=record.headers if headers is None else headers)


async def query(database_url: str, sql: str, *args):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def metric(service, name: str) -> float:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def dead_letters(infrastructure, producer, namespace: str) -> list:
    """Every record on the referral service's dead-letter topic, read up to its end."""
    topic = namespace + dead_letter_topic("referral").name
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=5000)
                records += batch.get(tp, [])
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def test_undecodable_records_reach_the_dead_letters_as_they_were_read_and_the_next_one_is_applied(
        service_process, producer, kafka_namespace, infrastructure):
    referral = await service_process("referral")
    good = a_consultation_event()
    record = encode(good)
    key = record.key  # one case, one partition: the good record comes after the bad ones
    bad_header = [(k, b"\xff\xfe" if k == "ce_type" else v) for k, v in record.headers]
    undecodable = [
        ("InvalidAttribute: ce_type: header value is not UTF-8", record.value, bad_header),
        ("MissingAttribute: ce_specversion", record.value, [("content-type", b"application/json")]),
        ("InvalidData: data: record value is not JSON", b"\x00not json", record.headers),
        ("InvalidData: data.", b'{"case_id": 7}', record.headers),
    ]
    for _, value, headers in undecodable:
        await publish(producer, kafka_namespace, good, value=value, headers=headers, key=key)
    await publish(producer, kafka_namespace, good)

    await eventually(lambda: query(referral.database_url, "SELECT count(*) FROM referrals WHERE case_id = $1",
                                   good.case_id), until=lambda n: n == 4)
    dead = await dead_letters(infrastructure, producer, kafka_namespace)

    assert len(dead) == len(undecodable), [dict(r.headers).get("x-dlq-error") for r in dead]
    for letter, (error, value, headers) in zip(dead, undecodable):
        marks = [(k, v) for k, v in letter.headers if k.startswith("x-dlq-")]
        assert letter.value == value and letter.key == key
        assert list(letter.headers[:len(headers)]) == list(headers), "the original headers, byte for byte"
        assert dict(marks)["x-dlq-error"].decode().startswith(error)
        assert dict(marks)["x-dlq-topic"].decode() == kafka_namespace + INTAKE_CASES.name
    assert await metric(referral, 'tsunagu_consumed_events_total{outcome="dead_lettered"') == 4
