"""The consumer tells the database's faults from the record's: an outage pauses it and dead-letters
nothing; a record's own fault is retried, then dead-lettered; a record of any bytes is applied or
dead-lettered with a typed error. Fakes stand in for the pool and Kafka."""

import asyncio
import dataclasses
import gc
import logging
import weakref
from types import SimpleNamespace
from uuid import UUID, uuid4

import anyio
import anyio.to_thread
import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.message import KafkaAckableMessage, KafkaMessage
from faststream.kafka.parser import AioKafkaParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, DecodeError, decode, encode
from tsunagu_outbox.locks import holds, took
from tsunagu_servicehost.app import Runtime, build_broker
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from tsunagu_servicehost.consumer import (
    BatchEventConsumer, EventConsumer, RetryPolicy, _WhenRevoked, readable_headers, the_message,
)
from tsunagu_servicehost.errors import database_unavailable
from tsunagu_servicehost.health import check_consumers
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import tracer_provider

pg = asyncpg.exceptions

THE_DATABASES_FAULT = {
    "connection refused": ConnectionRefusedError(111, "Connect call failed"),
    "connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "connection lost mid-statement": pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    "08001 cannot connect": pg.ClientCannotConnectError("could not connect"),
    "08006 connection failure": pg.ConnectionFailureError("connection failure"),
    "28P01 login refused": pg.InvalidPasswordError("password authentication failed"),
    "25006 read-only transaction": pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    "53100 disk full": pg.DiskFullError("could not extend file"),
    "53300 too many connections": pg.TooManyConnectionsError("sorry, too many clients already"),
    "57P01 admin shutdown": pg.AdminShutdownError("terminating connection due to administrator command"),
    "57P02 crash shutdown": pg.CrashShutdownError("terminating connection because of crash of another process"),
    "57P03 cannot connect now": pg.CannotConnectNowError("the database system is starting up"),
    "57P05 idle session timeout": pg.IdleSessionTimeoutError("terminating connection due to idle-session timeout"),
    "58030 I/O error": pg.PostgresIOError("could not read block"),
}
THE_RECORDS_FAULT = {
    "23505 unique violation": pg.UniqueViolationError("duplicate key value violates unique constraint"),
    "23503 foreign key violation": pg.ForeignKeyViolationError("violates foreign key constraint"),
    "22P02 bad value": pg.InvalidTextRepresentationError("invalid input syntax for type uuid"),
    "57014 statement timeout": pg.QueryCanceledError("canceling statement due to statement timeout"),
    "misuse of a connection": pg.InterfaceError("cannot perform operation: another operation is in progress"),
    "a bug": KeyError("needs"),
}


@pytest.mark.parametrize("error", THE_DATABASES_FAULT.values(), ids=THE_DATABASES_FAULT.keys())
def test_faults_of_the_database_are_infrastructure(error):
    assert database_unavailable(error)


@pytest.mark.parametrize("error", [*THE_RECORDS_FAULT.values(), TimeoutError()],
                         ids=[*THE_RECORDS_FAULT.keys(), "timeout: asked of the database, not assumed"])
def test_faults_of_the_record_are_not(error):
    assert not database_unavailable(error)


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

    async def fetch(self, sql, name, ids):
        """The batch's applied-event insert: the ids not applied before."""
        if self.database.down:
            raise self.database.down
        new = [i for i in dict.fromkeys(ids) if i not in self.database.applied]
        self.inserted |= set(new)
        return [{"event_id": i} for i in new]


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
                               consumer_pause_first_s=0.001, consumer_pause_max_s=0.002)
    runtime = Runtime(SimpleNamespace(name="referral"), settings, broker=None, registry=CollectorRegistry(),
                      tracer_provider=None, tokens=None, signer=None, pool=database,
                      dead_letters=FakeDeadLetters())
    runtime.consumed = Counter("consumed", "", ["consumer", "topic", "outcome"], registry=runtime.registry)
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


async def test_a_read_only_database_pauses_the_consumer_dead_letters_nothing_and_resumes_when_it_answers():
    database = FakeDatabase()
    database.down = pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
    runtime = a_runtime(database)
    consumer = a_consumer(runtime, applied)
    message = a_message()

    for _ in range(10):  # more deliveries than the record's retries
        with pytest.raises(NackMessage):
            await consumer.on_message(message)
        assert runtime.dead_letters.written == []
        assert "ReadOnlySQLTransactionError" in check_consumers(runtime)

    database.down = None
    await consumer.on_message(message)

    assert len(database.applied) == 1
    assert check_consumers(runtime) == "ok"


async def test_a_handler_that_loses_its_connection_pauses_the_consumer():
    runtime = a_runtime(FakeDatabase())

    async def connection_lost(conn, envelope):
        raise pg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    with pytest.raises(NackMessage):
        await a_consumer(runtime, connection_lost).on_message(a_message())
    assert runtime.dead_letters.written == []
    assert runtime.paused_consumers == {"tsunagu.intake.cases.v1": "ConnectionDoesNotExistError: connection was "
                                                                   "closed in the middle of operation"}


async def test_a_statement_that_times_out_while_the_database_answers_is_the_records_fault():
    runtime = a_runtime(FakeDatabase())
    calls = []

    async def too_slow(conn, envelope):
        calls.append(envelope.id)
        raise TimeoutError  # asyncpg's command timeout

    await a_consumer(runtime, too_slow).on_message(a_message())

    assert len(calls) == 3, "retried"
    [(topic, key, value, headers)] = runtime.dead_letters.written
    assert dict(headers)["x-dlq-error"] == b"TimeoutError: "
    assert check_consumers(runtime) == "ok"


async def test_a_statement_that_times_out_while_the_database_does_not_answer_pauses():
    database = FakeDatabase()
    runtime = a_runtime(database)

    async def cut_off(conn, envelope):
        database.unreachable = True
        raise TimeoutError

    with pytest.raises(NackMessage):
        await a_consumer(runtime, cut_off).on_message(a_message())
    assert runtime.dead_letters.written == []
    assert "statement timed out; database unreachable" in check_consumers(runtime)


@pytest.mark.parametrize("error", THE_RECORDS_FAULT.values(), ids=THE_RECORDS_FAULT.keys())
async def test_a_handler_failing_for_a_reason_of_its_own_is_retried_then_dead_lettered(error):
    runtime = a_runtime(FakeDatabase())

    async def failing(conn, envelope):
        raise error

    await a_consumer(runtime, failing).on_message(a_message())

    [(topic, _, _, headers)] = runtime.dead_letters.written
    assert topic == "tsunagu.dlq.referral.v1"
    assert dict(headers)["x-dlq-attempts"] == b"3"


async def test_a_failure_to_record_the_event_id_is_never_the_records_fault():
    database = FakeDatabase()
    database.down = pg.UndefinedTableError('relation "applied_events" does not exist')
    runtime = a_runtime(database)

    with pytest.raises(NackMessage):
        await a_consumer(runtime, applied).on_message(a_message())
    assert runtime.dead_letters.written == []


def test_pauses_double_from_the_first_up_to_the_cap_however_long_the_outage():
    runtime = a_runtime(FakeDatabase())
    runtime.settings = ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/x")
    consumer = a_consumer(runtime, applied)

    assert [consumer.pause_length(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert consumer.pause_length(100_000) == 30


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


async def test_a_paused_consumer_whose_partitions_are_revoked_no_longer_holds_the_service_unready():
    database = FakeDatabase()
    database.unreachable = True
    runtime = a_runtime(database)
    consumer = a_consumer(runtime, applied)
    with pytest.raises(NackMessage):
        await consumer.on_message(a_message())
    assert check_consumers(runtime) != "ok"

    await _WhenRevoked(consumer).on_partitions_revoked(set())

    assert check_consumers(runtime) == "ok" and consumer.pauses == 0


class CommittingConsumer(AIOKafkaConsumer):
    """The aiokafka consumer as the committer sees it: the partitions it holds, the offsets it commits."""

    def __init__(self, *held: int):
        self.held = {TopicPartition("tsunagu.intake.cases.v1", p) for p in held}
        self.commits: list[dict] = []
        self.sought: list[tuple] = []

    def assignment(self):
        return frozenset(self.held)

    async def commit(self, offsets=None):
        self.commits.append(dict(offsets))

    def seek(self, partition, offset):
        if partition not in self.held:
            raise IllegalStateError(f"No current assignment for partition {partition}")
        self.sought.append((partition.partition, offset))


def a_delivery(consumer: CommittingConsumer, partition: int = 3, offset: int = 7):
    """A record as FastStream hands it to a subscriber that acknowledges by itself."""
    message = a_message()
    raw = dataclasses.replace(message.raw_message, partition=partition, offset=offset)
    return KafkaAckableMessage(body=raw.value, raw_message=raw, consumer=consumer)


async def test_a_record_whose_dead_letter_cannot_be_written_is_sought_back_and_its_offset_not_committed():
    runtime = a_runtime(FakeDatabase())

    async def unwritable(*args):
        raise ConnectionRefusedError(111, "Connect call failed")

    async def failing(conn, envelope):
        raise KeyError("needs")

    runtime.dead_letters.write = unwritable
    consumer, kafka = a_consumer(runtime, failing), CommittingConsumer(3)

    with pytest.raises(ConnectionRefusedError):
        await consumer.consume(a_delivery(kafka, offset=7))
    await consumer.offsets.close()

    assert kafka.sought == [(3, 7)], "delivered again"
    assert kafka.commits == []


async def test_a_record_the_database_cannot_apply_is_sought_back_and_its_offset_not_committed():
    database = FakeDatabase()
    database.unreachable = True
    runtime = a_runtime(database)
    consumer, kafka = a_consumer(runtime, applied), CommittingConsumer(3)

    with pytest.raises(NackMessage):
        await consumer.consume(a_delivery(kafka, offset=7))
    await consumer.offsets.close()

    assert kafka.sought == [(3, 7)] and kafka.commits == []


async def test_a_batch_the_database_cannot_apply_seeks_each_partition_back_even_past_one_revoked_meanwhile():
    database = FakeDatabase()
    database.unreachable = True
    runtime = a_runtime(database)
    consumer = BatchEventConsumer(runtime, INTAKE_CASES, {ConsultationRegistered: applied})
    kafka = CommittingConsumer(2, 3)  # partition 1 was revoked while the batch was being applied
    records = tuple(dataclasses.replace(a_message().raw_message, partition=partition, offset=offset)
                    for partition, offset in [(1, 4), (1, 5), (2, 8), (3, 20), (3, 21)])

    with pytest.raises(NackMessage):
        await consumer.consume_batch(KafkaAckableMessage(body=[], raw_message=records, consumer=kafka))
    await consumer.offsets.close()

    assert kafka.sought == [(2, 8), (3, 20)]
    assert kafka.commits == []


# FastStream keeps what the decoder returned in the message; `the_message` returns the message, so
# the message refers to itself. Left so, each record waits for the cyclic collector, whose pauses
# under load were 10-30 ms.
@pytest.mark.parametrize("batch", [False, True], ids=["record", "batch"])
async def test_a_message_is_freed_once_applied_without_waiting_for_the_cyclic_collector(batch):
    runtime = a_runtime(FakeDatabase())
    kafka = CommittingConsumer(3)
    if batch:
        consumer = BatchEventConsumer(runtime, INTAKE_CASES, {ConsultationRegistered: applied})
        message = KafkaAckableMessage(body=[], raw_message=(a_delivery(kafka).raw_message,), consumer=kafka)
    else:
        consumer, message = a_consumer(runtime, applied), a_delivery(kafka)
    message.set_decoder(the_message)
    assert await message.decode() is message  # as FastStream decodes it before the subscriber runs
    freed = weakref.ref(message)

    gc.disable()
    try:
        await (consumer.consume_batch(message) if batch else consumer.consume(message))
        del message
        assert freed() is None
    finally:
        gc.enable()
    await consumer.offsets.close()
    assert kafka.commits == [{TopicPartition("tsunagu.intake.cases.v1", 3): 8}]


async def test_records_applied_one_after_another_are_committed_in_one_commit_of_each_partitions_next_offset():
    runtime = a_runtime(FakeDatabase())
    consumer, kafka = a_consumer(runtime, applied), CommittingConsumer(1, 2)
    consumer.offsets.interval = 3600  # only the commit on closing

    for partition, offset in [(1, 10), (2, 4), (1, 11), (1, 12)]:
        await consumer.consume(a_delivery(kafka, partition, offset))
    await consumer.offsets.close()

    assert kafka.commits == [{TopicPartition("tsunagu.intake.cases.v1", 1): 13,
                              TopicPartition("tsunagu.intake.cases.v1", 2): 5}]


async def test_revoked_partitions_have_what_is_done_on_them_committed_and_the_others_wait():
    runtime = a_runtime(FakeDatabase())
    consumer, kafka = a_consumer(runtime, applied), CommittingConsumer(1, 2)
    consumer.offsets.interval = 3600
    await consumer.consume(a_delivery(kafka, 1, 10))
    await consumer.consume(a_delivery(kafka, 2, 4))

    await _WhenRevoked(consumer).on_partitions_revoked({TopicPartition("tsunagu.intake.cases.v1", 1)})
    kafka.held.discard(TopicPartition("tsunagu.intake.cases.v1", 1))
    await consumer.offsets.close()

    assert kafka.commits == [{TopicPartition("tsunagu.intake.cases.v1", 1): 11},
                             {TopicPartition("tsunagu.intake.cases.v1", 2): 5}]


async def test_a_commit_refused_because_the_partitions_moved_is_dropped_and_their_records_come_back_to_the_new_owner(
        caplog):
    from aiokafka.errors import CommitFailedError
    runtime = a_runtime(FakeDatabase())
    consumer, kafka = a_consumer(runtime, applied), CommittingConsumer(1)
    consumer.offsets.interval = 3600

    async def refused(offsets=None):
        kafka.held.clear()  # the group rebalanced: partition 1 is another member's now
        raise CommitFailedError("the group has already rebalanced")

    kafka.commit = refused
    await consumer.consume(a_delivery(kafka, 1, 10))
    with caplog.at_level(logging.INFO, logger="tsunagu.consumer"):
        await consumer.offsets.commit()
    await consumer.offsets.commit()

    assert "offsets not committed (CommitFailedError)" in caplog.text
    assert consumer.offsets.done == {}, "dropped once the partition is no longer held"


header_values = st.none() | st.binary(max_size=48) | st.sampled_from([b"", b"\xff\xfe", b"\x00", "é".encode("latin-1")])
header_names = st.sampled_from(["ce_specversion", "ce_id", "ce_type", "ce_time", "ce_subject", "ce_source",
                                "ce_dataschema", "content-type", "traceparent", "tracestate"]) | st.text(max_size=12)
record_values = st.none() | st.binary(max_size=128) | st.sampled_from([b"", b"null", b"[" * 5000, b"\xef\xbb\xbf{}"])
A_GOOD_RECORD = a_message().raw_message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replaced=st.lists(st.tuples(header_names, header_values), max_size=10), keep_good_headers=st.booleans(),
       value=record_values | st.just(A_GOOD_RECORD.value))
def test_any_record_bytes_are_applied_or_dead_lettered_with_a_typed_error_and_the_consumer_goes_on(
        replaced, keep_good_headers, value):
    good = list(A_GOOD_RECORD.headers)
    headers = [*(good if keep_good_headers else []), *replaced]
    runtime = a_runtime(FakeDatabase())
    handled = []

    async def handler(conn, envelope):
        handled.append(envelope.id)

    async def consume_one() -> None:
        record = dataclasses.replace(A_GOOD_RECORD, headers=tuple(headers), value=value)
        message = await readable_headers(record, AioKafkaParser(KafkaMessage, None).parse_message)
        await a_consumer(runtime, handler).on_message(message)

    asyncio.run(consume_one())

    try:
        envelope = decode(headers, value)
    except DecodeError as refused:
        [(topic, _, letter_value, letter_headers)] = runtime.dead_letters.written
        assert topic == "tsunagu.dlq.referral.v1" and letter_value == value and handled == []
        assert letter_headers[:len(headers)] == headers, "the record as it was read, byte for byte"
        assert dict(letter_headers)["x-dlq-error"].decode().startswith(f"{type(refused).__name__}: {refused.field}")
    else:
        assert runtime.dead_letters.written == []
        assert handled == ([envelope.id] if isinstance(envelope.data, ConsultationRegistered) else [])


# A thread hop per record (FastStream resolving a handler parameter typed as the message from its
# context) cost about 13% of a consumer's CPU.
async def test_a_record_is_applied_without_handing_work_to_a_worker_thread(monkeypatch):
    handed_to_threads = []
    run_sync = anyio.to_thread.run_sync

    async def recording(func, *args, **kwargs):
        handed_to_threads.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
    database = FakeDatabase()
    runtime = a_runtime(database)
    runtime.broker = KafkaBroker()
    runtime.consumed_topics = []
    applied = []

    async def handler(conn, envelope):
        applied.append(envelope.data)

    EventConsumer(runtime, INTAKE_CASES, {ConsultationRegistered: handler}).subscribe()
    event = ConsultationRegistered.model_validate(ConsultationRegistered.model_json_schema()["examples"][0])
    record = encode(event)
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(record.value, runtime.topic(INTAKE_CASES.name), key=record.key,
                             headers={k: v.decode() for k, v in record.headers})

    assert applied == [event]
    assert handed_to_threads == []


def test_the_broker_logs_each_records_receipt_and_processing_at_debug_not_info():
    settings = ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/x")
    broker = build_broker("referral", settings, CollectorRegistry(), tracer_provider("referral"))

    assert broker.config.logger.log_level == logging.DEBUG


@pytest.mark.parametrize("message", [
    "invalid input for query argument $6: datetime.datetime(9999, 12, 31, 23, 0, t... (date value out of range)",
    "invalid input for query argument $2: '山田 太郎 090-1234-5678' (expected str, got int)",
    "invalid input for query argument $2: 'a (b) c'",
])
async def test_a_value_the_database_driver_cannot_send_is_dead_lettered_without_the_value(message):
    database = FakeDatabase()

    async def sends_a_bad_value(conn, envelope):
        raise asyncpg.DataError(message)

    runtime = a_runtime(database)
    await a_consumer(runtime, sends_a_bad_value).on_message(a_message())

    [(_, _, _, headers)] = runtime.dead_letters.written
    error = dict(headers)["x-dlq-error"].decode()
    assert error.startswith("DataError: invalid input for query argument $")
    assert "9999" not in error and "山田" not in error and "a (b) c" not in error


def a_batch(*case_ids) -> KafkaMessage:
    """Records of ConsultationRegistered for the cases given, in that order, on one partition."""
    example = ConsultationRegistered.model_validate(ConsultationRegistered.model_json_schema()["examples"][0])
    records = []
    for offset, case_id in enumerate(case_ids):
        record = encode(example.model_copy(update={"case_id": case_id}))
        records.append(ConsumerRecord(topic="tsunagu.intake.cases.v1", partition=3, offset=offset, timestamp=0,
                                      timestamp_type=0, key=record.key, value=record.value, checksum=None,
                                      serialized_key_size=0, serialized_value_size=0, headers=tuple(record.headers)))
    return SimpleNamespace(raw_message=tuple(records), body=None)


async def test_a_batch_of_several_cases_takes_their_locks_before_any_handler_runs():
    steps = []

    async def lock_first(conn, envelopes):
        steps.append(("lock", [e.data.case_id for e in envelopes]))

    async def handler(conn, envelope):
        steps.append(("apply", envelope.data.case_id))

    a, b = uuid4(), uuid4()
    consumer = BatchEventConsumer(a_runtime(FakeDatabase()), INTAKE_CASES, {ConsultationRegistered: handler},
                                  lock_first=lock_first)
    await consumer.on_batch(a_batch(b, a, b))

    assert steps == [("lock", [b, a, b]), ("apply", b), ("apply", a), ("apply", b)]


async def test_a_batch_of_one_case_leaves_the_lock_to_its_handler_as_a_record_alone_does():
    locked = []

    async def lock_first(conn, envelopes):
        locked.append(envelopes)

    case = uuid4()
    consumer = BatchEventConsumer(a_runtime(FakeDatabase()), INTAKE_CASES, {ConsultationRegistered: applied},
                                  lock_first=lock_first)
    await consumer.on_batch(a_batch(case, case))

    assert locked == []


async def test_the_handlers_of_a_batch_share_what_its_transaction_locked_and_the_next_batch_starts_with_nothing():
    seen = []

    async def handler(conn, envelope):
        seen.append(holds(envelope.data.case_id))
        took(envelope.data.case_id)

    a, b = uuid4(), uuid4()
    consumer = BatchEventConsumer(a_runtime(FakeDatabase()), INTAKE_CASES, {ConsultationRegistered: handler})
    await consumer.on_batch(a_batch(a, b, a))
    await consumer.on_batch(a_batch(a))

    assert seen == [False, False, True, False]


async def test_a_batch_consumer_polls_again_at_once_after_a_poll_that_found_nothing(monkeypatch):
    """FastStream's batch subscriber sleeps after an empty poll; a record arriving then waited for the
    sleep's end on every hop. The poll itself waits for records and returns as soon as one is there."""
    runtime = a_runtime(FakeDatabase())
    runtime.broker = KafkaBroker("127.0.0.1:9")  # never connected
    BatchEventConsumer(runtime, INTAKE_CASES, {ConsultationRegistered: applied}, max_records=7).subscribe()
    [subscriber] = runtime.broker.subscribers
    first, second = a_batch(uuid4(), uuid4()).raw_message
    polls = []

    class Polled:
        async def getmany(self, timeout_ms, max_records):
            polls.append((timeout_ms, max_records))
            return {} if len(polls) == 1 else {TopicPartition(first.topic, first.partition): [first, second]}

    async def no_pause(*args):
        raise AssertionError("paused after a poll that found nothing")

    monkeypatch.setattr(anyio, "sleep", no_pause)
    assert await subscriber.get_msg(Polled()) == ()
    assert await subscriber.get_msg(Polled()) == (first, second)
    assert polls == [(200, 7), (200, 7)], "each poll waits for records itself, a batch at most"
