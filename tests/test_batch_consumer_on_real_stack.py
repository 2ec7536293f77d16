"""A consumer that applies its records in batches still applies each event exactly once.

intake keeps each case's view of its referrals from referral's events, applying what the broker
gives in batches, one transaction each. The intake service runs as a real process, started behind
a backlog written straight to referral's referrals topic, so its first batch holds the whole backlog.
"""

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tsunagu_contracts import REFERRALS, ReferralRequested, dead_letter_topic, encode, uuid7
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
CONSUMER = "intake"
FAR_FUTURE = "9999-12-31T23:00:00-09:00"
"""A time the contracts decode and the database cannot store: past the year 9999 once in UTC."""


def referrals_of_one_case(n: int) -> list[ReferralRequested]:
    """`n` referrals asked on one case: one key, so one partition, in this order."""
    example = ReferralRequested.model_json_schema()["examples"][0]
    case_id, start = str(uuid7()), datetime.now(UTC) - timedelta(hours=1)
    return [ReferralRequested.model_validate({
        **example, "case_id": case_id, "referral_id": str(uuid7()), "sheet_id": str(uuid7()),
        "occurred_at": (start + timedelta(seconds=i)).isoformat()}) for i in range(n)]


def happening_in_the_far_future(event: ReferralRequested):
    """The event's record as a producer other than the contracts' `encode` (which refuses the
    time) could write it: well-formed, and its time `FAR_FUTURE`."""
    record = encode(event)
    data = {**json.loads(record.value), "occurred_at": FAR_FUTURE}
    headers = [(k, FAR_FUTURE.encode() if k == "ce_time" else v) for k, v in record.headers]
    return dataclasses.replace(record, value=json.dumps(data).encode(), headers=headers)


async def publish(infrastructure, namespace: str, records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options,
                                enable_idempotence=True)
    await producer.start()
    try:  # sent together, so they reach the broker, and a consumer, in as few batches as they fit
        await asyncio.gather(*[await producer.send(namespace + REFERRALS.name, record.value, key=record.key,
                                                   headers=list(record.headers)) for record in records])
    finally:
        await producer.stop()


async def query(service, sql: str, *args):
    conn = await asyncpg.connect(service.database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def applied_by_the_consumer(service) -> int:
    return await query(service, "SELECT count(*) FROM applied_events WHERE consumer = $1", CONSUMER)


async def consumer_metric(service, outcome: str) -> float:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    prefix = f'tsunagu_consumed_events_total{{consumer="{CONSUMER}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix) and f'outcome="{outcome}"' in line)


async def caught_up(infrastructure, namespace: str) -> bool:
    """intake's group has committed every record of the referrals topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{namespace}tsunagu-{CONSUMER}")
        partitions = [tp for tp in committed if tp.topic == namespace + REFERRALS.name]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return bool(partitions) and all(committed[tp].offset >= ends[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def dead_letters(infrastructure, namespace: str, until: int) -> list:
    consumer = AIOKafkaConsumer(namespace + dead_letter_topic(CONSUMER).name,
                                bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options,
                                auto_offset_reset="earliest", group_id=f"test-{uuid.uuid4()}")
    await consumer.start()
    try:
        records = []
        while len(records) < until:
            records.append(await asyncio.wait_for(consumer.getone(), 60))
        return records
    finally:
        await consumer.stop()


async def test_a_poison_record_in_the_middle_of_a_batch_is_dead_lettered_and_every_other_event_applied_once(
        service_process, kafka_namespace, infrastructure):
    events = referrals_of_one_case(21)
    records = [encode(event) for event in events]
    records[10] = happening_in_the_far_future(events[10])
    await publish(infrastructure, kafka_namespace, records)

    intake = await service_process("intake")
    await eventually(lambda: caught_up(infrastructure, kafka_namespace), until=bool)
    # Dead letters are written at least once: when the group rebalances while the poison record is
    # retried (as the service's consumers join it at start), the batch comes again, and so does it.
    dead_lettered = int(await consumer_metric(intake, "dead_lettered"))
    dead = await dead_letters(infrastructure, kafka_namespace, until=dead_lettered)

    assert await applied_by_the_consumer(intake) == 20, "the twenty good events, each once"
    assert await consumer_metric(intake, "applied") == 20
    assert await query(intake, "SELECT count(*) FROM case_referrals WHERE case_id = $1", events[0].case_id) == 20
    assert await query(intake, "SELECT count(*) FROM case_referrals WHERE referral_id = $1",
                       events[10].referral_id) == 0, "nothing of the poison record is stored"
    assert dead_lettered >= 1
    assert {(dict(d.headers)["x-dlq-consumer"], dict(d.headers)["x-dlq-offset"]) for d in dead} == {
        (CONSUMER.encode(), b"10")}, "the poison record, and only it, is dead-lettered"
    assert {dict(d.headers)["x-dlq-error"] for d in dead} == {
        b"DataError: invalid input for query argument $5 (date value out of range)"}, "the error, never the value"


async def test_a_batch_killed_between_its_database_commit_and_its_offset_commit_is_applied_once(
        service_process, kafka_namespace, infrastructure, scratch_databases):
    events = referrals_of_one_case(50)
    database = await scratch_databases.create("intake")
    doomed = await service_process("intake", database_url=database,
                                   extra_env={"TSUNAGU_FAILPOINT": "after-commit-before-ack"})

    await publish(infrastructure, kafka_namespace, map(encode, events))
    await eventually(lambda: asyncio.sleep(0, not doomed.running), until=bool)
    assert doomed.process.returncode == -9, "SIGKILL right after a batch's database commit"
    committed_before_the_kill = await applied_by_the_consumer(doomed)
    assert committed_before_the_kill > 0
    assert not await caught_up(infrastructure, kafka_namespace), "its offsets were never committed"

    restarted = await service_process("intake", database_url=database, migrate=False)
    await eventually(lambda: caught_up(infrastructure, kafka_namespace), until=bool)

    assert await applied_by_the_consumer(restarted) == 50
    assert await query(restarted, "SELECT count(*) FROM case_referrals WHERE case_id = $1", events[0].case_id) == 50
    assert await consumer_metric(restarted, "applied") == 50 - committed_before_the_kill
    assert await consumer_metric(restarted, "duplicate") >= committed_before_the_kill, (
        "the batch whose offsets were never committed came again, and changed nothing")
