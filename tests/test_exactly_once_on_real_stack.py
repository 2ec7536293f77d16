"""At-least-once delivery, exactly-once effects: redelivery, crashes, poison records, timers, scale-out.

The referral service runs as a real process; records are written straight to its input topic as
intake would write them.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, dead_letter_topic, encode, uuid7
from tsunagu_teststack.services import kafka_env
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
NEEDS = ["rent_loan", "housing", "debt", "health"]


def a_consultation_event() -> ConsultationRegistered:
    example = ConsultationRegistered.model_json_schema()["examples"][0]
    return ConsultationRegistered.model_validate({**example, "case_id": str(uuid7()), "needs": NEEDS,
                                                  "primary_need": "rent_loan",
                                                  "occurred_at": datetime.now(UTC).isoformat()})


@pytest.fixture
async def producer(infrastructure):
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options, enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


async def publish(producer, namespace: str, event, event_id=None, *, value=None, headers=None) -> None:
    record = encode(event, event_id=event_id)
    await producer.send_and_wait(namespace + INTAKE_CASES.name, value if value is not None else record.value,
                                 key=record.key, headers=headers if headers is not None else record.headers)


async def query(service, sql: str, *args):
    conn = await asyncpg.connect(service.database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def caught_up(infrastructure, namespace: str) -> bool:
    """The referral group has committed every record of the intake topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{namespace}tsunagu-referral")
        topic = namespace + INTAKE_CASES.name
        partitions = [tp for tp in committed if tp.topic == topic]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return bool(partitions) and all(committed[tp].offset >= ends[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def metric(service, name: str) -> float:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def intake_topic_members(infrastructure, namespace: str) -> list[dict]:
    """The referral group's members that consume the intake topic, once the group is stable."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await admin.start()
    try:
        response = await admin.describe_consumer_groups([f"{namespace}tsunagu-referral"])
    finally:
        await admin.close()
    group = response[0].to_object()["groups"][0]
    if group["state"] != "Stable":
        return []
    intake_topic = (namespace + INTAKE_CASES.name).encode()
    return [m for m in group["members"] if intake_topic in m["member_assignment"]]


async def test_a_redelivered_event_changes_nothing(service_process, producer, kafka_namespace, infrastructure):
    referral = await service_process("referral")
    event, event_id = a_consultation_event(), uuid7()

    await publish(producer, kafka_namespace, event, event_id)
    await publish(producer, kafka_namespace, event, event_id)
    await eventually(lambda: caught_up(infrastructure, kafka_namespace), until=bool)

    assert await query(referral, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id) == 4
    assert await query(referral, "SELECT count(*) FROM applied_events WHERE consumer = 'referral' AND event_id = $1",
                       event_id) == 1
    assert await metric(referral, 'tsunagu_consumed_events_total{consumer="referral",outcome="duplicate"') == 1


async def test_killed_between_database_commit_and_offset_commit_nothing_is_lost_or_applied_twice(
        service_process, producer, kafka_namespace, infrastructure, scratch_databases):
    database = await scratch_databases.create("referral")
    doomed = await service_process("referral", database_url=database,
                                   extra_env={"TSUNAGU_FAILPOINT": "after-commit-before-ack"})
    event, event_id = a_consultation_event(), uuid7()

    await publish(producer, kafka_namespace, event, event_id)
    await eventually(lambda: asyncio.sleep(0, not doomed.running), until=bool)
    assert doomed.process.returncode == -9, "SIGKILL right after the database commit"
    assert await query(doomed, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id) == 4
    assert not await caught_up(infrastructure, kafka_namespace), "the offset was never committed"

    restarted = await service_process("referral", database_url=database, migrate=False)
    await eventually(lambda: caught_up(infrastructure, kafka_namespace), until=bool)

    assert await query(restarted, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id) == 4
    assert await query(restarted, "SELECT count(*) FROM applied_events WHERE consumer = 'referral' AND event_id = $1",
                       event_id) == 1
    assert await metric(restarted, 'tsunagu_consumed_events_total{consumer="referral",outcome="duplicate"') == 1, (
        "it was redelivered")
    published = await eventually(lambda: query(restarted, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"),
                                 until=lambda n: n == 5)
    assert published == 5, "the sheet and four referrals, each published once"


async def test_a_poison_record_is_dead_lettered_and_the_records_after_it_are_processed(
        service_process, producer, kafka_namespace, infrastructure):
    referral = await service_process("referral")
    good = a_consultation_event()
    poison_headers = [(k, v) for k, v in encode(good).headers if k != "ce_type"]

    await publish(producer, kafka_namespace, good, value=b'{"broken": ', headers=poison_headers)
    await publish(producer, kafka_namespace, good)
    await eventually(lambda: query(referral, "SELECT count(*) FROM referrals WHERE case_id = $1", good.case_id),
                     until=lambda n: n == 4)

    dead = AIOKafkaConsumer(kafka_namespace + dead_letter_topic("referral").name,
                            bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options, auto_offset_reset="earliest",
                            group_id=f"test-{uuid.uuid4()}")
    await dead.start()
    try:
        record = await asyncio.wait_for(dead.getone(), 30)
    finally:
        await dead.stop()
    headers = dict(record.headers)
    assert record.value == b'{"broken": ' and record.key == str(good.case_id).encode()
    assert headers["x-dlq-error"].decode() == "MissingAttribute: ce_type: required CloudEvents header is missing"
    assert headers["x-dlq-topic"].decode() == kafka_namespace + INTAKE_CASES.name
    assert headers["x-dlq-consumer"] == b"referral"


async def test_an_overdue_referral_comes_from_a_timer_that_was_due_while_the_service_was_down(
        service_process, producer, kafka_namespace, scratch_databases, auth_headers):
    database = await scratch_databases.create("referral")
    first = await service_process("referral", database_url=database)
    event = a_consultation_event()
    await publish(producer, kafka_namespace, event)
    await eventually(lambda: query(first, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id),
                     until=lambda n: n == 4)
    await first.stop()

    # While the service is down, the deadline of one referral passes, and the case goes three weeks
    # without contact.
    overdue_id = await query(first, "UPDATE referrals SET accept_by = $2 WHERE case_id = $1 AND need = 'housing' "
                                    "RETURNING referral_id", event.case_id, datetime.now(UTC) - timedelta(hours=1))
    await query(first, "UPDATE sheets SET opened_at = opened_at - interval '21 days' WHERE case_id = $1",
                event.case_id)
    second = await service_process("referral", database_url=database, migrate=False,
                                   extra_env={"TSUNAGU_REFERRAL_TIMER_INTERVAL_S": "0.5"})

    async def queue():
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            return (await client.get("/v1/referrals", params={"status": "requested"},
                                     headers=auth_headers("coordinator"))).json()

    listed = await eventually(queue, until=lambda rs: rs and rs[0]["overdue"])
    assert listed[0]["referral_id"] == str(overdue_id), "overdue first"
    assert sum(r["overdue"] for r in listed) == 1
    assert await eventually(lambda: query(second, "SELECT count(*) FROM outbox WHERE topic = $1 AND "
                                                  "headers->>'ce_type' = 'tsunagu.referral.overdue.v1' AND "
                                                  "published_at IS NOT NULL", "tsunagu.referral.referrals.v1"),
                            until=lambda n: n == 1) == 1
    silent = await eventually(lambda: query(second, "SELECT value FROM outbox WHERE headers->>'ce_type' = "
                                                    "'tsunagu.referral.case-contact-overdue.v1'"), until=bool)
    assert b'"days_without_contact":21' in bytes(silent)


async def test_a_second_instance_joins_the_group_and_shares_the_partitions(
        service_process, producer, kafka_namespace, scratch_databases, infrastructure):
    database = await scratch_databases.create("referral")
    one = await service_process("referral", database_url=database)
    await service_process("referral", database_url=database, migrate=False)
    # Each instance has one consumer per input topic; two of them now share the intake topic.
    sharing = await eventually(lambda: intake_topic_members(infrastructure, kafka_namespace),
                               until=lambda m: len(m) == 2)
    assert sharing[0]["member_assignment"] != sharing[1]["member_assignment"]

    events = [a_consultation_event() for _ in range(12)]
    for event in events:
        await publish(producer, kafka_namespace, event)
    await eventually(lambda: query(one, "SELECT count(*) FROM sheets"), until=lambda n: n == 12)
    assert await query(one, "SELECT count(*) FROM referrals") == 48


async def test_a_named_instance_killed_and_restarted_takes_its_partitions_back_as_the_same_member(
        service_process, producer, kafka_namespace, scratch_databases, infrastructure):
    database = await scratch_databases.create("referral")
    named = {"TSUNAGU_INSTANCE_ID": "referral-7"}
    first = await service_process("referral", database_url=database, extra_env=named)
    # A static member's id is its instance name and a suffix the broker chooses (KIP-345).
    [member] = await eventually(lambda: intake_topic_members(infrastructure, kafka_namespace),
                                until=lambda m: len(m) == 1)
    assert member["member_id"].startswith(f"referral-7.{INTAKE_CASES.name}-")

    await first.kill()
    restarted = await service_process("referral", database_url=database, migrate=False, extra_env=named)
    [taken_back] = await eventually(lambda: intake_topic_members(infrastructure, kafka_namespace),
                                    until=lambda m: len(m) == 1 and m[0]["member_id"] != member["member_id"])
    assert taken_back["member_id"].startswith(f"referral-7.{INTAKE_CASES.name}-")
    assert taken_back["member_assignment"] == member["member_assignment"]

    event = a_consultation_event()
    await publish(producer, kafka_namespace, event)
    await eventually(lambda: query(restarted, "SELECT count(*) FROM sheets WHERE case_id = $1", event.case_id),
                     until=lambda n: n == 1)


async def test_dead_letters_can_be_replayed_onto_their_topic_once_the_cause_is_fixed(
        service_process, producer, kafka_namespace, infrastructure):
    referral = await service_process("referral")
    event = a_consultation_event()
    record = encode(event)
    # As the dead-letter topic holds it after an earlier version of the service failed on it.
    await producer.send_and_wait(
        kafka_namespace + dead_letter_topic("referral").name, record.value, key=record.key,
        headers=[*record.headers, ("x-dlq-error", b"RuntimeError: a bug since fixed"),
                 ("x-dlq-topic", (kafka_namespace + INTAKE_CASES.name).encode()), ("x-dlq-attempts", b"5")])

    replay = await asyncio.create_subprocess_exec(
        # As an operator runs it: the dead letters go back onto intake's topic, which only the
        # operations (admin) Kafka user may write, never the referral service's own.
        *referral_command(referral, "replay-dead-letters"), env={**referral.env, **kafka_env(infrastructure.kafka_admin)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await replay.communicate()

    assert replay.returncode == 0, output.decode()
    assert "1 dead letter(s) replayed" in output.decode()
    assert await eventually(lambda: query(referral, "SELECT count(*) FROM referrals WHERE case_id = $1",
                                          event.case_id), until=lambda n: n == 4) == 4


def referral_command(service, command: str) -> list[str]:
    import sys

    return [sys.executable, "-m", service.module, command]


async def test_a_consultation_that_arrives_after_the_case_closed_reopens_it(
        service_process, producer, kafka_namespace, auth_headers):
    referral = await service_process("referral")
    event = a_consultation_event()
    await publish(producer, kafka_namespace, event)
    await eventually(lambda: query(referral, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id),
                     until=lambda n: n == 4)
    async with httpx.AsyncClient(base_url=referral.url, timeout=10) as client:
        closed = await client.post(f"/v1/cases/{event.case_id}/closure", json={"reason": "resolved"},
                                   headers=auth_headers("coordinator"))
    assert closed.status_code == 204

    # Registered at a counter before intake heard of the closing.
    again = ConsultationRegistered.model_validate({
        **event.model_dump(mode="json"), "consultation_id": str(uuid7()), "needs": ["no_food"],
        "primary_need": "no_food", "occurred_at": datetime.now(UTC).isoformat()})
    await publish(producer, kafka_namespace, again)

    await eventually(lambda: query(referral, "SELECT count(*) FROM referrals WHERE case_id = $1 AND need = "
                                             "'no_food'", event.case_id), until=lambda n: n == 1)
    assert await query(referral, "SELECT closed_at FROM sheets WHERE case_id = $1", event.case_id) is None
    assert await query(referral, "SELECT count(*) FROM outbox WHERE headers->>'ce_type' = "
                                 "'tsunagu.referral.case-reopened.v1'") == 1
