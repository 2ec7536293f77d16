"""The consumer dead-letters a record it cannot decode, whatever its bytes, as it was read. Fakes stand
in for the pool and Kafka."""

from types import SimpleNamespace
from uuid import UUID

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaParser
from prometheus_client import CollectorRegistry, Counter

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, encode
from tsunagu_servicehost.app import Runtime
from tsunagu_servicehost.consumer import EventConsumer, RetryPolicy, readable_headers
from tsunagu_servicehost.settings import ServiceSettings


class FakeConnection:
    def __init__(self, database: "FakeDatabase"):
        self.database = database
        self.inserted: set[UUID] = set()

    def transaction(self):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, *exc):
        if exc_type is None:
            self.database.applied |= self.inserted
        self.inserted = set()
        return False

    async def execute(self, sql, *args):
        if self.database.down:
            raise self.database.down
        if args[1] in self.database.applied:
            return "INSERT 0 0"
        self.inserted.add(args[1])
        return "INSERT 0 1"


class FakeDatabase:
    """A pool whose database is up, or down with a given error; it answers `SELECT 1` unless unreachable."""

    def __init__(self):
        self.down: Exception | None = None
        self.unreachable = False
        self.applied: set[UUID] = set()

    async def acquire(self):
        if self.unreachable:
            raise ConnectionRefusedError(111, "Connect call failed")
        return FakeConnection(self)

    async def release(self, conn):
        pass

    async def fetchval(self, sql):
        if self.unreachable:
            raise ConnectionRefusedError(111, "Connect call failed")
        return 1


class FakeDeadLetters:
    def __init__(self):
        self.written: list[tuple] = []

    async def write(self, topic, key, value, headers):
        self.written.append((topic, key, value, headers))


def a_runtime(database: FakeDatabase) -> Runtime:
    settings = ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/x",
)
    runtime = Runtime(SimpleNamespace(name="referral"), settings, broker=None, registry=CollectorRegistry(),
                      tracer_provider=None, pool=database, dead_letters=FakeDeadLetters())
    runtime.consumed = Counter("consumed", "", ["topic", "outcome"], registry=runtime.registry)
    return runtime


def a_consumer(runtime: Runtime, handler) -> EventConsumer:
    return EventConsumer(runtime, INTAKE_CASES, {ConsultationRegistered: handler},
                         retry=RetryPolicy(attempts=3, first_delay=0.001, max_delay=0.001))


def a_message(headers=None, value=None) -> SimpleNamespace:
    event = ConsultationRegistered.model_validate(ConsultationRegistered.model_json_schema()["examples"][0])
    record = encode(event)
    raw = ConsumerRecord(topic="tsunagu.intake.cases.v1", partition=3, offset=7, timestamp=0, timestamp_type=0,
                         key=record.key, value=record.value if value is None else value, checksum=None,
                         serialized_key_size=0, serialized_value_size=0,
                         headers=tuple(record.headers if headers is None else headers))
    return SimpleNamespace(raw_message=raw, body=raw.value)


async def applied(conn, envelope):
    pass


async def test_a_record_with_header_bytes_that_are_not_utf8_is_dead_lettered_byte_for_byte():
    runtime = a_runtime(FakeDatabase())
    headers = [(k, b"\xff\xfe" if k == "ce_type" else v) for k, v in a_message().raw_message.headers]
    message = a_message(headers=headers)

    await a_consumer(runtime, applied).on_message(message)

    [(_, key, value, written)] = runtime.dead_letters.written
    assert (key, value) == (message.raw_message.key, message.raw_message.value)
    assert written[:len(headers)] == headers
    assert dict(written)["x-dlq-error"] == b"InvalidAttribute: ce_type: header value is not UTF-8"


async def test_faststream_reads_a_record_whose_headers_are_not_text_and_the_handler_gets_the_original():
    parser = AioKafkaParser(KafkaMessage, None)
    record = a_message(headers=[("ce_type", b"\xff\xfe"), ("x-null", None), ("traceparent", b"00-ab")]).raw_message

    message = await readable_headers(record, parser.parse_message)

    assert message.raw_message is record
    assert message.headers["ce_type"] == "\ufffd\ufffd" and message.headers["x-null"] == ""
