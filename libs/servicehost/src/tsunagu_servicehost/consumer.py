"""Consuming events exactly once in effect, with bounded retries and a dead-letter topic.

The FastStream subscriber only decodes and calls a plain async handler. Each handler runs in one
database transaction that first records the event id in `applied_events`; a redelivered event
finds its id there and changes nothing. The offset is committed after that transaction, coalesced
(`OffsetCommitter`): one commit per partition every `COMMIT_INTERVAL_S` at most, with every record
done meanwhile, instead of a broker round trip per record. A crash before a commit only delivers
again records that are already applied, and they are duplicates.

Whose fault is a failure? The answer decides what happens to the record:

- The record's: it cannot be decoded (whatever its bytes), or its handler fails for a reason of
  its own (a bug, a constraint violation, a bad value, a statement too slow for its timeout). An
  undecodable record goes straight to the service's dead-letter topic; a failing one is retried
  with exponential backoff and jitter, then dead-lettered. The partition moves on.
- The database's (errors.database_unavailable, anything that stops a transaction from starting or
  the event id from being recorded, a timeout while the database does not answer): no record is
  at fault, so none is dead-lettered. The consumer pauses, longer each time up to a cap, without
  committing; the record is delivered again after each pause and applied once the database
  answers. While paused, the service's /readyz answers 503 with the reason.

A `BatchEventConsumer` takes what the broker gives (up to `max_records`) and applies it in one
transaction: it records every event id at once, runs the handlers of the new ones in partition
order, commits, then commits the offsets. When a record of the batch is at fault, the batch is
applied again record by record, as `EventConsumer` applies them, so only that record is retried
and dead-lettered; when the database is, the whole batch is delivered again after the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import random
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_contracts import Envelope, Event, Topic, dead_letter_topic, decode
from tsunagu_outbox.locks import remembering_locks
from tsunagu_servicehost.errors import INFRASTRUCTURE_ERRORS, database_unavailable
from tsunagu_servicehost.health import check_database
from tsunagu_telemetry import id_attributes, log_fields

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord

    from tsunagu_servicehost.app import Runtime

__all__ = ["BATCH", "COMMIT_INTERVAL_S", "INFRASTRUCTURE_ERRORS", "BatchEventConsumer", "DatabaseUnavailable",
           "EventConsumer", "Handler", "OffsetCommitter", "RetryPolicy"]

log = logging.getLogger("tsunagu.consumer")
_propagator = TraceContextTextMapPropagator()

Handler = Callable[[asyncpg.Connection, Envelope[Any]], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a record whose handler failed for a reason of its own."""

    attempts: int = 5
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)


COMMIT_INTERVAL_S = 0.1
"""How long the offsets of records done wait to be committed together. An OffsetCommit round trip per
record cost 6-13% of a consumer's CPU and a round trip of latency per record on every partition."""

COMMIT_TIMEOUT_S = 5.0
"""How long a revocation or a stop waits for the last commit of a consumer's partitions; past it, their
records come back as duplicates."""

COMMIT_RETRY_MAX_S = 5.0
"""The longest wait before committing again after commits failed (a broker away): doubling from
`COMMIT_INTERVAL_S`."""


class OffsetCommitter:
    """Commits the offsets of one consumer's records done, coalesced: at most one commit in flight, the
    next `interval` seconds later with every record done meanwhile.

    A record is done once its transaction committed (or it was dead-lettered or skipped). A
    partition's records are done in order, and a record that fails is sought back before any record
    after it is consumed, so the highest offset done on a partition has every record before it done.
    Its successor is what is committed. Single writer: only the consuming task marks records done;
    the commits (the periodic one, a revocation's, the last one on stop) take turns on `lock`.
    """

    def __init__(self, name: str, interval: float = COMMIT_INTERVAL_S):
        self.name = name
        self.interval = interval
        self.consumer: AIOKafkaConsumer | None = None
        self.done: dict[TopicPartition, int] = {}
        """Partition → the offset to commit: the next after the highest record done, not yet committed."""
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None
        self.failures = 0

    def mark_done(self, consumer: Any, records: Any) -> None:
        """The records are applied (or dead-lettered, or skipped): their offsets are committed soon."""
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # FastStream's test broker: no group, nothing to commit
        self.consumer = consumer
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            if record.offset + 1 > self.done.get(partition, -1):
                self.done[partition] = record.offset + 1
        if self.task is None or self.task.done():
            # A context of its own: the commits belong to no record's trace or log fields.
            self.task = asyncio.create_task(self._commit_soon(), name=f"{self.name}:offset-commits",
                                            context=contextvars.Context())

    async def _commit_soon(self) -> None:
        while self.done:
            await asyncio.sleep(min(COMMIT_RETRY_MAX_S, self.interval * 2 ** self.failures))
            await self.commit()

    async def commit(self, partitions: Any = None) -> None:
        """Commit what is done on `partitions` (all when None). A partition this consumer no longer holds
        is dropped: its records come back to its new owner, which finds them applied."""
        async with self.lock:
            consumer = self.consumer
            if consumer is None:
                return
            chosen = {p: o for p, o in self.done.items() if partitions is None or p in partitions}
            for partition in chosen:
                del self.done[partition]
            held = consumer.assignment()
            offsets = {p: o for p, o in chosen.items() if p in held}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except BaseException as exc:
                # Kept for the next commit while held: a rebalance that leaves the partitions here, a
                # broker away for a while, a commit cut short. Once the partitions moved, the next
                # commit drops them.
                for partition, offset in offsets.items():
                    self.done[partition] = max(offset, self.done.get(partition, -1))
                if not isinstance(exc, (KafkaError, OSError)):
                    raise
                self.failures += 1
                log.info("%s: offsets not committed (%s); trying again", self.name, type(exc).__name__)
                return
            self.failures = 0

    def forget(self, partitions: Any) -> None:
        """Partitions gone to another owner: what was done on them here is no longer committed from here."""
        for partition in partitions:
            self.done.pop(partition, None)

    async def close(self, timeout: float = COMMIT_TIMEOUT_S) -> None:
        """Commit what is done before the consumer closes, waiting `timeout` seconds at most for the broker."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                await self.commit()
        except TimeoutError:
            log.info("%s: offsets not committed before stopping; their records come back as duplicates", self.name)


class DatabaseUnavailable(Exception):
    """The database cannot apply any record now; the record in hand is not at fault."""


async def the_message(message: KafkaMessage) -> KafkaMessage:
    """The decoder hands the handler the message itself. A handler parameter annotated as the
    message would be resolved from FastStream's context, a synchronous lookup that fast_depends
    runs on a worker thread for every record (measured: about 13% of a consumer's CPU).

    FastStream caches what the decoder returns in the message, so the message then refers to itself:
    a reference cycle that takes its records and headers with it. Left alone, they are freed only by
    the cyclic collector, in pauses of 10-30 ms under load (20,000 such objects at a time, measured
    at 100 consultations/s). The subscribers drop the cache first (`unwind`), and each message is
    freed as soon as it is done with."""
    return message


def unwind(message: KafkaMessage) -> None:
    """Drop the cached copy of itself that `the_message` left in the message."""
    message.clear_cache()


async def readable_headers(record: "ConsumerRecord", parse: Callable[[Any], Awaitable[KafkaMessage]]) -> KafkaMessage:
    """FastStream's parser decodes every header value as UTF-8 before any handler runs; a record it
    cannot decode is neither acknowledged nor sought back, so the next commit silently passes it
    over. FastStream (logging, tracing) reads a copy with such bytes replaced; the handler decodes
    the record as it arrived, and refuses it into the dead letters."""
    try:
        return await parse(record)
    except (UnicodeDecodeError, AttributeError):  # AttributeError: a null header value
        headers = [(k, b"" if v is None else v.decode(errors="replace").encode()) for k, v in record.headers]
        message = await parse(dataclasses.replace(record, headers=headers))
        message.raw_message = record
        return message


class EventConsumer:
    """Applies the events of one topic to one service's database, each exactly once."""

    def __init__(self, runtime: "Runtime", topic: Topic, handlers: Mapping[type[Event], Handler],
                 retry: RetryPolicy = RetryPolicy()):
        self.runtime = runtime
        self.topic = topic
        self.handlers = dict(handlers)
        self.retry = retry
        self.name = runtime.service.name
        """Names the consumer group (`tsunagu-<name>`) and the applied-event records."""
        self.dead_letters = runtime.topic(dead_letter_topic(runtime.service.name).name)
        self.pauses = 0
        """Consecutive pauses for an unavailable database; 0 while it answers."""
        self.offsets = OffsetCommitter(self.name)

    def subscribe(self) -> None:
        self.runtime.broker.subscriber(self.registered(), **self.subscriber_options())(self.consume)

    def registered(self) -> str:
        """The topic as this deployment names it, with its lag and this consumer's offset commits
        made known to the service (its /metrics, its stop)."""
        topic = self.runtime.topic(self.topic.name)
        self.runtime.consumed_topics.append(topic)
        self.runtime.offset_committers.append(self.offsets)
        return topic

    def subscriber_options(self) -> dict[str, Any]:
        return dict(
            group_id=self.runtime.topic(f"tsunagu-{self.name}"),
            auto_offset_reset="earliest",
            # FastStream would commit after every record, a broker round trip each; `consume` marks
            # the record done and `OffsetCommitter` commits many at once.
            ack_policy=AckPolicy.MANUAL,
            # A service's consumers share one group, so each that joins makes the others rejoin on
            # their next heartbeat, and a member that died is noticed only when its session ends.
            # A 1 s heartbeat and the broker's shortest session (6 s) make a start or a restart
            # after SIGKILL take seconds instead of 10-17 s (measured with three consumers).
            heartbeat_interval_ms=1000,
            session_timeout_ms=6000,
            # A named instance is a static member: restarted within its session, it takes back
            # its partitions at once, and the group's other members do not rebalance.
            group_instance_id=self.group_instance_id(),
            parser=readable_headers,
            listener=_WhenRevoked(self),
            # The value is decoded by the contracts, never by FastStream: a record that is not
            # JSON must reach `decode` and the dead letters, not fail before the handler.
            decoder=the_message,
        )

    def group_instance_id(self) -> str | None:
        """One static member per instance and topic: a service's consumers share one group."""
        instance = self.runtime.settings.instance_id
        return f"{instance}.{self.topic.name}" if instance else None

    async def consume(self, message: Any) -> None:
        """`message`: the KafkaMessage (`the_message`), typed Any so that nothing resolves it. Done, its
        offset is committed soon; failed (NackMessage for an unavailable database, or anything else),
        its partition is sought back to it, so that it is delivered again and nothing after it is
        committed before it."""
        unwind(message)
        try:
            await self.on_message(message)
        except Exception:
            self.deliver_again(message)
            raise
        self.offsets.mark_done(message.consumer, (message.raw_message,))

    def deliver_again(self, message: Any) -> None:
        """Seek each partition of the message back to its first record there, so that the record is
        delivered again and nothing after it is done before it (FastStream's `nack`, but one revoked
        partition does not stop the others' seeks: its new owner starts from its committed offset,
        before this record, anyway)."""
        records = message.raw_message if isinstance(message.raw_message, tuple) else (message.raw_message,)
        first: dict[TopicPartition, int] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            first[partition] = min(record.offset, first.get(partition, record.offset))
        for partition, offset in first.items():
            try:
                message.consumer.seek(partition, offset)
            except IllegalStateError:
                log.info("%s: a failed record's partition was revoked; its new owner gets it again", self.name)

    async def on_message(self, message: Any) -> None:
        """Apply, dead-letter or skip the record; NackMessage while the database cannot apply it."""
        raw = message.raw_message
        envelope = await self.decoded(raw)
        if envelope is None:
            return
        # FastStream's process span continues the record's traceparent; it is named for the topic,
        # so the event is named here, by ids and codes only.
        trace.get_current_span().set_attributes({
            "tsunagu.event_id": str(envelope.id), "tsunagu.event_type": envelope.type, **id_attributes(envelope.data)})
        handler = self.handlers.get(type(envelope.data))
        if handler is None:
            self.count("skipped")  # an event on this topic that this service does not act on
            return
        with log_fields(event_id=envelope.id, event_type=envelope.type):
            await self.apply(envelope, handler, raw)

    async def decoded(self, raw: Any) -> Envelope | None:
        """The record's event, or None once an undecodable record is dead-lettered."""
        try:
            return decode(raw.headers, raw.value)
        except Exception as exc:  # noqa: BLE001 - decoding reads the record alone: whatever it raises, its fault
            await self.dead_letter(raw, exc, attempts=1)
            return None

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.runtime.consumed.labels(self.name, self.topic.name, outcome).inc(n)

    async def apply(self, envelope: Envelope, handler: Handler, raw: Any) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                applied = await self.apply_once(envelope, handler)
            except Exception as exc:  # noqa: BLE001 - sorted below: the database's fault or the record's
                if reason := await self.unavailable(exc):
                    await self.pause(envelope, reason)
                    # Sought back: the record is delivered again, and nothing after it is committed.
                    raise NackMessage() from exc
                self.resume()
                if attempt == self.retry.attempts:
                    await self.dead_letter(raw, exc, attempts=attempt)
                    return
                log.info("%s: %s failed (attempt %d): %s", self.name, envelope.type, attempt, type(exc).__name__)
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            self.resume()
            self.count("applied" if applied else "duplicate")
            self.failpoint_after_commit()
            return

    def failpoint_after_commit(self) -> None:
        if self.runtime.settings.failpoint == "after-commit-before-ack":
            # Fault injection for the crash tests: die between the database commit and the
            # offset commit, the window exactly-once effects must survive.
            os.kill(os.getpid(), signal.SIGKILL)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction; a pool that cannot give one is the database's fault."""
        pool = self.runtime.db
        try:
            conn = await pool.acquire()
        except Exception as exc:  # noqa: BLE001 - no statement has run: whatever stops it is the database's
            raise DatabaseUnavailable(_reason(exc)) from exc
        try:
            async with conn.transaction():
                with remembering_locks():  # a batch's handlers ask for a lock the batch holds only once
                    yield conn
        finally:
            await pool.release(conn)

    async def apply_once(self, envelope: Envelope, handler: Handler) -> bool:
        """Run the handler in one transaction with the applied-event record; False if already applied."""
        async with self.transaction() as conn:
            try:
                status = await conn.execute(
                    "INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    self.name, envelope.id)
            except Exception as exc:  # noqa: BLE001 - the same statement for every record: never its fault
                raise DatabaseUnavailable(_reason(exc)) from exc
            if status == "INSERT 0 0":
                return False
            await handler(conn, envelope)
        return True

    async def unavailable(self, exc: Exception) -> str | None:
        """Why the database cannot apply any record now, or None when the failure is the record's."""
        if isinstance(exc, DatabaseUnavailable):
            return str(exc)
        if database_unavailable(exc):
            return _reason(exc)
        if isinstance(exc, TimeoutError):
            # No answer in time: a database that is gone, or a statement too slow for the record.
            # A database that answers now leaves the record at fault.
            health = await check_database(self.runtime)
            return None if health == "ok" else f"statement timed out; database {health}"
        return None

    def pause_length(self, pauses: int) -> float:
        """The `pauses`-th pause in a row: doubling from the first, up to the cap."""
        settings = self.runtime.settings
        # The exponent is bounded: an outage of a night counts thousands of pauses, and 2.0 ** 1024 overflows.
        return min(settings.consumer_pause_max_s, settings.consumer_pause_first_s * 2 ** min(pauses - 1, 64))

    async def pause(self, envelope: Envelope, reason: str) -> None:
        self.pauses += 1
        pause = self.pause_length(self.pauses)
        self.runtime.paused_consumers[self.pause_key] = reason
        log.warning("%s: database unavailable applying %s (%s); pausing %.1fs, pause %d, nothing dead-lettered",
                    self.name, envelope.type, reason, pause, self.pauses)
        await asyncio.sleep(pause)

    def resume(self) -> None:
        """The database answered: no more pauses, and /readyz no longer names this consumer."""
        if self.pauses:
            log.warning("%s: the database answers again after %d pause(s); consuming %s", self.name,
                        self.pauses, self.topic.name)
        self.forget_pause()

    def forget_pause(self) -> None:
        self.pauses = 0
        self.runtime.paused_consumers.pop(self.pause_key, None)

    @property
    def pause_key(self) -> str:
        """How /readyz names this consumer: its topic."""
        return self.runtime.topic(self.topic.name)

    async def dead_letter(self, raw: Any, error: Exception, attempts: int) -> None:
        # The error names a type and a field, never the record's content.
        reason = _reason(error, limit=500)
        headers = list(raw.headers or []) + [
            ("x-dlq-error", reason.encode()),
            ("x-dlq-attempts", str(attempts).encode()),
            ("x-dlq-topic", raw.topic.encode()),
            ("x-dlq-partition", str(raw.partition).encode()),
            ("x-dlq-offset", str(raw.offset).encode()),
            ("x-dlq-consumer", self.name.encode()),
        ]
        await self.runtime.dead_letters.write(self.dead_letters, raw.key, raw.value, headers)
        self.count("dead_lettered")
        log.warning("%s: record %s[%s]@%s dead-lettered after %d attempt(s): %s", self.name, raw.topic,
                    raw.partition, raw.offset, attempts, reason)


async def readable_batch_headers(records: tuple["ConsumerRecord", ...],
                                 parse: Callable[[Any], Awaitable[KafkaMessage]]) -> KafkaMessage:
    """`readable_headers` for a batch: FastStream reads copies, the handler the records as they arrived."""
    try:
        return await parse(records)
    except (UnicodeDecodeError, AttributeError):
        message = await parse(tuple(dataclasses.replace(record, headers=[
            (k, b"" if v is None else v.decode(errors="replace").encode()) for k, v in record.headers])
            for record in records))
        message.raw_message = records
        return message


BATCH = 50
"""Records a service's own consumers apply in one transaction at most. A batch is what the broker has
ready: one record when the service keeps up, more as load rises, so the cost per record (the
transaction, the applied-event record, the consumer's own work per message) falls as load rises."""


class BatchesWithoutPause(BatchSubscriber):
    """FastStream's batch subscriber, except that a poll that found nothing is followed by the next
    poll at once. FastStream's own sleeps `batch_timeout_ms` after an empty poll, and a record that
    arrived during that sleep waited for its end: about 0.2 s on every hop, so a consultation after a
    quiet spell reached its partner in 0.6 s instead of 30 ms. The poll (`getmany`) itself waits up to
    `batch_timeout_ms` for a record and returns as soon as one is there."""

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        records = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        return tuple(chain.from_iterable(records.values()))


class BatchEventConsumer(EventConsumer):
    """Applies the events of one topic in batches, one transaction per batch, each event exactly once.

    Order per partition is kept: the broker gives a partition's records in order, and the handlers
    run in that order. A backlog is caught up many times faster than one record per transaction.
    A batch holds the row locks of all its events until it commits: where handlers take locks that
    another batch or request may take in another order, `lock_first` takes them in one order; a
    deadlock that still happens fails the batch, which is then applied record by record."""

    def __init__(self, *args: Any, max_records: int = 500,
                 lock_first: Callable[[asyncpg.Connection, list[Envelope]], Awaitable[None]] | None = None,
                 **kwargs: Any):
        """`lock_first(conn, envelopes)` runs in the batch's transaction before any handler: a consumer
        whose handlers take locks (a case's) takes all of the batch's in one order there, so that two
        batches never wait on each other in a circle."""
        super().__init__(*args, **kwargs)
        self.max_records = max_records
        self.lock_first = lock_first
        provider = self.runtime.tracer_provider
        self.tracer = (provider.get_tracer if provider is not None else trace.get_tracer)(
            f"tsunagu.{self.runtime.service.name}.consumer")

    def subscribe(self) -> None:
        subscriber = self.runtime.broker.subscriber(self.registered(), **{
            **self.subscriber_options(), "batch": True, "max_records": self.max_records,
            "batch_timeout_ms": 200, "parser": readable_batch_headers})
        subscriber.__class__ = BatchesWithoutPause
        subscriber(self.consume_batch)

    async def consume_batch(self, message: Any) -> None:
        """`consume` for a batch: a failure seeks each partition back to its first record in the batch."""
        unwind(message)
        try:
            await self.on_batch(message)
        except Exception:
            self.deliver_again(message)
            raise
        self.offsets.mark_done(message.consumer, message.raw_message)

    async def on_batch(self, message: Any) -> None:
        """`message`: the batch's KafkaMessage (`the_message`), typed Any so that nothing resolves it."""
        records = message.raw_message
        applicable: list[tuple[Any, Envelope, Handler]] = []
        for raw in records:  # in partition order: the broker gives each partition's records in order
            envelope = await self.decoded(raw)
            if envelope is None:
                continue
            handler = self.handlers.get(type(envelope.data))
            if handler is None:
                self.count("skipped")
                continue
            applicable.append((raw, envelope, handler))
        if not applicable:
            return
        trace.get_current_span().set_attribute("tsunagu.batch_size", len(applicable))
        try:
            applied = await self.apply_batch(applicable)
        except Exception as exc:  # noqa: BLE001 - sorted below: the database's fault or a record's
            if reason := await self.unavailable(exc):
                await self.pause(applicable[0][1], reason)
                # Sought back to the batch's first record of each partition: nothing of it was applied.
                raise NackMessage() from exc
            self.resume()
            log.info("%s: a batch of %d failed (%s); applying it record by record", self.name, len(applicable),
                     type(exc).__name__)
            # The transaction was rolled back: nothing of the batch is applied, and each record gets
            # the retries and the dead letter it would get alone. A database outage meanwhile raises
            # NackMessage, and the records applied before it come back as duplicates.
            for raw, envelope, handler in applicable:
                with log_fields(event_id=envelope.id, event_type=envelope.type):
                    await self.apply(envelope, handler, raw)
            return
        self.resume()
        self.count("applied", applied)
        self.count("duplicate", len(applicable) - applied)
        self.failpoint_after_commit()

    async def apply_batch(self, events: list[tuple[Any, Envelope, Handler]]) -> int:
        """Run the handlers of the events (record, event, handler) not yet applied, in one transaction
        with their applied-event records; the number applied. Each handler runs in a span of its own
        record's trace, as a record consumed alone does: what it causes joins its case's trace."""
        async with self.transaction() as conn:
            try:
                # Exactly once: the ids are recorded in the transaction of their effects, which
                # commits before the offsets do. The primary key (consumer, event_id) makes a
                # second writer of an id (a redelivery, a rebuild, another instance after a
                # rebalance) wait for this transaction and then find the id; RETURNING names
                # only the ids inserted now, and an id twice in the batch is inserted once.
                # Sorted: two batches with ids in common lock them in the same order, never in
                # a circle.
                new = {row["event_id"] for row in await conn.fetch(
                    "INSERT INTO applied_events (consumer, event_id) SELECT $1, id FROM unnest($2::uuid[]) AS id "
                    "ORDER BY id ON CONFLICT DO NOTHING RETURNING event_id",
                    self.name, [envelope.id for _, envelope, _ in events])}
            except Exception as exc:  # noqa: BLE001 - the same statement for every batch: never a record's fault
                raise DatabaseUnavailable(_reason(exc)) from exc
            fresh = [envelope for _, envelope, _ in events if envelope.id in new]
            if self.lock_first is not None and len({getattr(e.data, "case_id", None) for e in fresh}) > 1:
                # One case's lock alone cannot close a circle: its handler takes it as it would alone.
                await self.lock_first(conn, fresh)
            applied = 0
            for raw, envelope, handler in events:
                if envelope.id in new:
                    new.discard(envelope.id)  # a second copy in the same batch is a duplicate
                    with self.record_span(raw, envelope), log_fields(event_id=envelope.id, event_type=envelope.type):
                        await handler(conn, envelope)
                    applied += 1
        return applied

    @contextlib.contextmanager
    def record_span(self, raw: Any, envelope: Envelope) -> Iterator[None]:
        """A CONSUMER span continuing the record's `traceparent`, named and described as FastStream names
        the span of a record consumed alone (by ids and codes only)."""
        headers = {k: v.decode(errors="replace") for k, v in raw.headers or () if k in ("traceparent", "tracestate")}
        with self.tracer.start_as_current_span(f"{raw.topic} process", context=_propagator.extract(headers),
                                               kind=SpanKind.CONSUMER, attributes={
                "messaging.system": "kafka", "messaging.operation": "process",
                "messaging.destination_publish.name": raw.topic,
                "messaging.kafka.destination.partition": raw.partition, "messaging.kafka.message.offset": raw.offset,
                "tsunagu.event_id": str(envelope.id), "tsunagu.event_type": envelope.type,
                **id_attributes(envelope.data)}):
            yield


class _WhenRevoked(ConsumerRebalanceListener):
    """Partitions about to go to another instance: what is done on them is committed first, so their
    new owner starts after it (a commit that fails leaves duplicates to it, never a gap).

    The record a paused consumer holds is no longer its own either: no record will come back to clear
    the flag, so it is cleared here, and set again if the record returns and still cannot be applied."""

    def __init__(self, consumer: EventConsumer):
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.consumer.forget_pause()
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self.consumer.offsets.commit(set(revoked))
        except TimeoutError:
            log.info("%s: offsets of revoked partitions not committed; their new owner gets their records again",
                     self.consumer.name)
        self.consumer.offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+): .*?(?: \(([^()]*)\))?$")
"""asyncpg's DataError quotes the value it could not send; only the argument and the cause are kept."""


def _reason(exc: BaseException, limit: int = 200) -> str:
    """The error by its type and message, without the values of the record it failed on: the reason
    goes into logs and dead-letter headers."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, asyncpg.DataError) and (quoted := _ARGUMENT_VALUE.match(text)):
        text = quoted[1] + (f" ({quoted[2]})" if quoted[2] else "")
    return f"{type(exc).__name__}: {text}"[:limit]
