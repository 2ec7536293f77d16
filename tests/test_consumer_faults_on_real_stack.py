"""Whose fault is it? A consumer tells the database's faults from the record's.

While the database is unreachable or read-only, the referral service pauses consuming, says so on
/readyz, and applies every record once the database is back: nothing is dead-lettered for an
outage. A record that cannot be decoded, whatever bytes it holds, reaches the dead letters as it
was read, and the partition moves on.
"""

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, dead_letter_topic, encode, uuid7
from tsunagu_servicehost.auth import Role
from tsunagu_teststack.tokens import bearer_token
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
NEEDS = ["rent_loan", "housing", "debt", "health"]
# Short pauses keep the test quick; the backoff still doubles from the first pause up to this cap.
PAUSES = {"TSUNAGU_CONSUMER_PAUSE_MAX_S": "2"}


def a_consultation_event(case_id=None) -> ConsultationRegistered:
    example = ConsultationRegistered.model_json_schema()["examples"][0]
    return ConsultationRegistered.model_validate({**example, "case_id": str(case_id or uuid7()), "needs": NEEDS,
                                                  "primary_need": "rent_loan",
                                                  "occurred_at": datetime.now(UTC).isoformat()})


class DatabaseProxy:
    """A loopback TCP proxy in front of PostgreSQL that can be cut (open connections dropped, new ones
    refused) and restored on the same port, as a network outage or a database restart looks to a client."""

    def __init__(self, database_url: str):
        parts = urlsplit(database_url)
        self.database_url = database_url
        self.target = (parts.hostname, parts.port or 5432)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        parts = urlsplit(self.database_url)
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self.server.close()
        for writer in list(self.connections):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def close(self) -> None:
        if self.server is not None:
            await self.cut()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        pair = {client_writer, upstream_writer}
        self.connections |= pair
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            self.connections -= pair
            for writer in pair:
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def producer(infrastructure):
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options, enable_idempotence=True)
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


async def readiness(service) -> tuple[int, dict]:
    """/readyz as operations read it: with an ops token, so it says why."""
    ops = {"Authorization": f"Bearer {bearer_token(Role.OPS)}"}
    async with httpx.AsyncClient(base_url=service.url, timeout=10, headers=ops) as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def metric(service, name: str) -> float:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def dead_letters(infrastructure, producer, namespace: str) -> list:
    """Every record on the referral service's dead-letter topic, read up to its end."""
    topic = namespace + dead_letter_topic("referral").name
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options, enable_auto_commit=False,
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


async def test_records_published_while_the_database_is_unreachable_are_applied_once_after_it_returns(
        service_process, producer, kafka_namespace, infrastructure, scratch_databases):
    database = await scratch_databases.create("referral")
    proxy = DatabaseProxy(database)
    await proxy.open()
    try:
        referral = await service_process("referral", database_url=proxy.url, extra_env=PAUSES)
        first = a_consultation_event()
        await publish(producer, kafka_namespace, first)
        await eventually(lambda: query(database, "SELECT count(*) FROM sheets"), until=lambda n: n == 1)

        await proxy.cut()
        during = [a_consultation_event() for _ in range(5)]
        for event in during:
            await publish(producer, kafka_namespace, event)
        status, outage = await eventually(lambda: readiness(referral),
                                          until=lambda r: r[0] == 503 and r[1]["checks"].get("consumers", "ok") != "ok")
        await proxy.open()
        await eventually(lambda: query(database, "SELECT count(*) FROM sheets"), until=lambda n: n == 6)
        after = await eventually(lambda: readiness(referral), until=lambda r: r[0] == 200)
    finally:
        await proxy.close()

    assert outage["status"] == "unavailable"
    assert f"{kafka_namespace}{INTAKE_CASES.name}" in outage["checks"]["consumers"]
    assert "paused" in outage["checks"]["consumers"]
    assert after[1]["checks"]["consumers"] == "ok"
    for event in during:
        assert await query(database, "SELECT count(*) FROM referrals WHERE case_id = $1", event.case_id) == 4
    assert await query(database, "SELECT count(*) FROM applied_events WHERE consumer = 'referral'") == 6, (
        "each event applied once")
    assert await dead_letters(infrastructure, producer, kafka_namespace) == [], "an outage is not the records' fault"
    assert await metric(referral, 'tsunagu_consumed_events_total{consumer="referral",outcome="dead_lettered"') == 0


async def test_a_database_that_turns_read_only_pauses_the_consumer_instead_of_dead_lettering(
        service_process, producer, kafka_namespace, infrastructure, scratch_databases):
    database = await scratch_databases.create("referral")
    name = urlsplit(database).path.lstrip("/")
    referral = await service_process("referral", database_url=database, extra_env=PAUSES)
    await publish(producer, kafka_namespace, a_consultation_event())
    await eventually(lambda: query(database, "SELECT count(*) FROM sheets"), until=lambda n: n == 1)

    async def read_only(on: bool) -> None:
        # As after a fail-over to a standby: every new session of the service is read-only.
        admin = await asyncpg.connect(infrastructure.postgres_admin_dsn)
        try:
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            await admin.execute(f'ALTER DATABASE "{name}" {setting}')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        finally:
            await admin.close()

    await read_only(True)
    try:
        during = [a_consultation_event() for _ in range(3)]
        for event in during:
            await publish(producer, kafka_namespace, event)
        status, paused = await eventually(lambda: readiness(referral),
                                          until=lambda r: "ReadOnlySQLTransactionError" in r[1]["checks"].get(
                                              "consumers", ""))
    finally:
        await read_only(False)
    await eventually(lambda: query(database, "SELECT count(*) FROM sheets"), until=lambda n: n == 4)
    await eventually(lambda: readiness(referral), until=lambda r: r[0] == 200)

    assert status == 503 and paused["checks"]["database"] == "ok", "the database answers, but cannot apply"
    assert await query(database, "SELECT count(*) FROM applied_events WHERE consumer = 'referral'") == 4
    assert await dead_letters(infrastructure, producer, kafka_namespace) == []


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
    assert await metric(referral, 'tsunagu_consumed_events_total{consumer="referral",outcome="dead_lettered"') == 4


async def test_adversarial_records_each_reach_the_dead_letters_with_a_typed_error_and_the_consumer_goes_on(
        service_process, producer, kafka_namespace, infrastructure):
    referral = await service_process("referral")
    good = a_consultation_event()
    record = encode(good)
    headers = list(record.headers)

    def replaced(name: str, value: bytes | None) -> list:
        return [(k, value if k == name else v) for k, v in headers]

    # The shapes the wire properties (contracts/tests/test_wire_properties.py, the consumer's in
    # libs/servicehost/tests/test_consumer_faults.py) generate, each as the broker really carries it.
    adversarial = [
        ("a tombstone (null value)", None, headers, "InvalidData: data: record value is not JSON"),
        ("an empty value", b"", headers, "InvalidData: data: record value is not JSON"),
        ("a value that is not UTF-8", b'{"case_id": "\xff"}', headers, "InvalidData: data: record value is not JSON"),
        ("a UTF-8 byte-order mark before the JSON", b"\xef\xbb\xbf" + record.value, headers,
         "InvalidData: data: record value is not JSON"),
        ("JSON nested deeper than the parser recurses", b"[" * 100_000, headers, "InvalidData: data:"),
        ("a null ce_type header", record.value, replaced("ce_type", None), "MissingAttribute: ce_type"),
        ("a second ce_id that is not a UUID", record.value, [*headers, ("ce_id", b"not-a-uuid")],
         "InvalidAttribute: ce_id"),
        ("a time without its time zone", record.value, replaced("ce_time", b"2026-11-27T10:15:00"),
         "InvalidAttribute: ce_time"),
        ("a header name that is not a CloudEvents attribute holding any bytes, and a wrong specversion",
         record.value, [*replaced("ce_specversion", b"0.3"), ("x-\u00e9", b"\x00\xff")],
         "InvalidAttribute: ce_specversion"),
    ]
    for _, value, record_headers, _ in adversarial:
        await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, value, key=record.key,
                                     headers=record_headers)
    await publish(producer, kafka_namespace, good)

    await eventually(lambda: query(referral.database_url, "SELECT count(*) FROM referrals WHERE case_id = $1",
                                   good.case_id), until=lambda n: n == 4)
    dead = await dead_letters(infrastructure, producer, kafka_namespace)

    assert len(dead) == len(adversarial), [dict(r.headers).get("x-dlq-error") for r in dead]
    for letter, (shape, value, record_headers, error) in zip(dead, adversarial):
        assert letter.value == value and letter.key == record.key, shape
        assert list(letter.headers[:len(record_headers)]) == list(record_headers), shape
        assert dict(letter.headers[len(record_headers):])["x-dlq-error"].decode().startswith(error), shape
    dead_lettered = 'tsunagu_consumed_events_total{consumer="referral",outcome="dead_lettered"'
    assert await metric(referral, dead_lettered) == len(adversarial)
    assert (await readiness(referral))[0] == 200, "the consumer is still running and the service ready"
