"""The fault matrix: the whole loop under load while a part of it dies, then a reconciliation.

Each fault runs a bounded, steady load of consultations (each with one need routed to a partner
and the person's consent), injects the fault, and checks that every consultation has its referral
and every referral reached the partner, with one webhook id per event: nothing lost, nothing
doubled, nothing held, nothing left in an outbox. Figures (latency, time to recover) are written
to var/test-output/fault-matrix.txt and printed; they are reported, never asserted.
"""

import asyncio
import random
import sys
import time

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tsunagu_contracts import INTAKE_CASES, PartnerDeliveries, PartnerResponded, dead_letter_topic, uuid7
from tsunagu_outbox import append
from tsunagu_teststack.services import kafka_env
from tsunagu_teststack.private import PrivateKafka, PrivatePostgres
from tsunagu_teststack.waiting import eventually
from tsunagu_topics import ensure_topics

pytestmark = [pytest.mark.stack, pytest.mark.faults]
RATE, SECONDS = 10.0, 20.0
LOAD = f"{RATE:g} consultations/s for {SECONDS:g} s"


def assert_kept_every_promise(report) -> None:
    report.write()
    assert (report.lost, report.doubled, report.held, report.outbox_backlog) == (0, 0, 0, 0), report.line()
    assert report.consultations == int(RATE * SECONDS)


async def under_load(loop, fault) -> None:
    """Drive the load and inject the fault at once; then wait until the loop has settled."""
    await asyncio.gather(loop.drive(RATE, SECONDS), fault())
    await loop.settle()


async def test_r1_each_service_killed_at_random_moments_under_load(infrastructure, loop_on):
    loop = await loop_on(infrastructure.kafka_bootstrap, infrastructure.postgres_admin_dsn, infrastructure.kafka_admin)
    recovery: list[float] = []
    chance = random.Random(20261129)

    async def kill_each_service():
        for name in ("intake", "referral", "partner-notification", "referral", "partner-notification"):
            await asyncio.sleep(chance.uniform(1.0, 3.5))
            service = loop.services[name]
            await service.kill()
            began = time.monotonic()
            await asyncio.sleep(chance.uniform(0.2, 1.5))
            await service.start()
            await loop.ready(service)
            recovery.append(time.monotonic() - began)

    await under_load(loop, kill_each_service)
    report = await loop.reconcile("R1 SIGKILL intake, referral, partner-notification at random moments", LOAD)
    report.recovery_s = recovery
    assert_kept_every_promise(report)


async def test_r2_the_broker_killed_and_restarted_under_load(infrastructure, loop_on):
    kafka = PrivateKafka("faults-r2").start()
    try:
        loop = await loop_on(kafka.bootstrap, infrastructure.postgres_admin_dsn)
        recovery: list[float] = []

        async def kill_the_broker():
            await asyncio.sleep(5)
            kafka.kill()
            began = time.monotonic()
            await asyncio.sleep(3)
            await asyncio.to_thread(kafka.restart)
            recovery.append(time.monotonic() - began)

        await under_load(loop, kill_the_broker)
        report = await loop.reconcile("R2 SIGKILL the only broker, restarted after 3 s", LOAD)
        report.recovery_s = recovery
    finally:
        kafka.remove()
    assert_kept_every_promise(report)


async def test_r3_one_of_three_brokers_lost_under_load(infrastructure, loop_on):
    kafka = PrivateKafka("faults-r3", nodes=3).start()
    try:
        loop = await loop_on(kafka.bootstrap, infrastructure.postgres_admin_dsn)
        recovery: list[float] = []

        async def lose_a_broker():
            await asyncio.sleep(5)
            kafka.kill(2)
            began = time.monotonic()
            await asyncio.sleep(8)
            await asyncio.to_thread(kafka.restart, 2)
            recovery.append(time.monotonic() - began)

        await under_load(loop, lose_a_broker)
        report = await loop.reconcile("R3 one of three brokers (RF 3, min.insync 2) SIGKILLed, back after 8 s",
                                      LOAD)
        report.recovery_s = recovery
    finally:
        kafka.remove()
    assert_kept_every_promise(report)


async def test_r4_postgresql_restarted_under_load(infrastructure, loop_on):
    postgres = PrivatePostgres().start()
    try:
        loop = await loop_on(infrastructure.kafka_bootstrap, postgres.admin_dsn, infrastructure.kafka_admin)
        recovery: list[float] = []

        async def restart_postgres():
            await asyncio.sleep(5)
            await asyncio.to_thread(postgres.stop, "immediate")
            began = time.monotonic()
            await asyncio.sleep(6)
            await asyncio.to_thread(postgres.start)
            await asyncio.gather(*(loop.ready(s) for s in loop.services.values()))
            recovery.append(time.monotonic() - began)

        await under_load(loop, restart_postgres)
        report = await loop.reconcile("R4 PostgreSQL crashed (immediate stop) for 6 s, restarted", LOAD)
        report.recovery_s = recovery
    finally:
        await loop.stop()
        postgres.remove()
    assert_kept_every_promise(report)


async def run_command(service, *argv: str, env: dict[str, str] | None = None) -> str:
    """A service's own command (`python -m <module> ...`), as an operator runs it."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", service.module, *argv,
                                                   env={**service.env, **(env or {})},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def dead_letters(bootstrap: str, options: dict, topic: str) -> int:
    """How many records a dead-letter topic holds (it has one partition, as the registry says)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **options)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        return (await consumer.end_offsets([partition]))[partition] - \
            (await consumer.beginning_offsets([partition]))[partition]
    finally:
        await consumer.stop()


POISON = [({"ce_specversion": b"1.0", "ce_type": b"\xff\xfe"}, b"{}"),   # a header that is not text
          ({}, b"{}"),                                                   # no CloudEvents headers at all
          ({"ce_specversion": b"1.0", "ce_id": b"x", "ce_source": b"/x", "ce_type":
            b"tsunagu.intake.need-identified.v1", "content-type": b"application/json"}, b"not json"),
          ({"ce_specversion": b"1.0", "ce_id": b"y", "ce_source": b"/x", "ce_type":
            b"tsunagu.intake.need-identified.v1", "content-type": b"application/json"}, b'{"need": "pizza"}')]


async def test_r5_poison_records_and_a_poison_outbox_row_under_load_then_released(infrastructure, loop_on):
    fast_outbox = {"TSUNAGU_OUTBOX_MAX_ATTEMPTS": "3", "TSUNAGU_OUTBOX_FIRST_RETRY_S": "0.2",
                   "TSUNAGU_OUTBOX_PUBLISH_TIMEOUT_S": "1"}
    loop = await loop_on(infrastructure.kafka_bootstrap, infrastructure.postgres_admin_dsn, infrastructure.kafka_admin,
                         partner_notification=fast_outbox)
    partners = loop.services["partner-notification"]
    missing = PartnerDeliveries.for_partner(uuid7())
    poison_row = PartnerResponded.model_validate({**PartnerResponded.model_json_schema()["examples"][0],
                                                  "case_id": str(uuid7()), "response_id": str(uuid7())})

    async def poison():
        await asyncio.sleep(5)
        producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
        await producer.start()
        try:
            for headers, value in POISON:
                await producer.send_and_wait(loop.namespace + INTAKE_CASES.name, value, key=b"poison",
                                             headers=list(headers.items()))
        finally:
            await producer.stop()
        conn = await asyncpg.connect(partners.database_url)
        try:
            async with conn.transaction():  # a record for a topic that does not exist: it can never go out
                await append(conn, poison_row, topic=missing.name)
        finally:
            await conn.close()

    await under_load(loop, poison)
    dlq = {name: loop.namespace + dead_letter_topic(name).name for name in ("referral", "partner-notification")}
    dead = await eventually(lambda: asyncio.gather(*(dead_letters(infrastructure.kafka_bootstrap, infrastructure.kafka_options, t)
                                                     for t in dlq.values())),
                            until=lambda counts: all(c >= len(POISON) for c in counts))
    parked = await eventually(lambda: loop.count("partner-notification", "SELECT count(*) FROM outbox "
                                                 "WHERE parked_at IS NOT NULL"), until=lambda n: n == 1)

    # The cause is fixed and an operator releases both: the parked row goes out, the dead letters go
    # back onto their topic (where, still poison, they are dead-lettered again, and nothing stops).
    await ensure_topics(infrastructure.kafka_bootstrap, [missing], namespace=loop.namespace,
                        credentials=infrastructure.kafka_admin)
    conn = await asyncpg.connect(partners.database_url)
    try:
        parked_id = await conn.fetchval("SELECT event_id FROM outbox WHERE parked_at IS NOT NULL")
    finally:
        await conn.close()
    released = await run_command(partners, "replay-outbox", "--event-id", str(parked_id))
    # Back onto intake's topic: only the operations (admin) Kafka user may write it.
    replayed = await run_command(loop.services["referral"], "replay-dead-letters",
                                 env=kafka_env(infrastructure.kafka_admin))
    again = await eventually(lambda: dead_letters(infrastructure.kafka_bootstrap, infrastructure.kafka_options, dlq["referral"]),
                             until=lambda n: n >= dead[0] + len(POISON))
    await eventually(lambda: loop.count("partner-notification", "SELECT count(*) FROM outbox "
                                        "WHERE published_at IS NULL"), until=lambda n: n == 0)

    report = await loop.reconcile("R5 four poison records on the intake topic and one outbox row for a missing "
                                  "topic, mid-load; then released", LOAD)
    assert dead == [len(POISON)] * 2 and parked == 1, "each poison record dead-lettered once by each consumer"
    assert "1 parked outbox row(s) released" in released and f"{len(POISON)} dead letter(s)" in replayed
    assert again == dead[0] + len(POISON)
    assert_kept_every_promise(report)
