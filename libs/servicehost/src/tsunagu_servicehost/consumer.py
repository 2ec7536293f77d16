"""Consuming events exactly once in effect, with bounded retries and a dead-letter topic.

The FastStream subscriber only decodes and calls a plain async handler. Each handler runs in one
database transaction that first records the event id in `applied_events`; a redelivered event
finds its id there and changes nothing. The offset is committed after that transaction.

- A record that cannot be decoded, whatever its bytes, goes straight to the service's dead-letter
  topic, as it was read.
- A handler that raises is retried with exponential backoff and jitter, then dead-lettered; the
  partition moves on.
- When the database or the broker itself is unreachable, nothing is dead-lettered: the record is
  not acknowledged, the consumer seeks back and tries again after a pause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from tsunagu_contracts import Envelope, Event, Topic, dead_letter_topic, decode
from tsunagu_servicehost.errors import INFRASTRUCTURE_ERRORS

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord

    from tsunagu_servicehost.app import Runtime

log = logging.getLogger("tsunagu.consumer")

Handler = Callable[[asyncpg.Connection, Envelope[Any]], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.2
    max_delay: float = 5.0
    infrastructure_pause: float = 2.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)


async def raw_value(message: Any) -> bytes:
    return message.body


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
        self.dead_letters = runtime.topic(dead_letter_topic(self.name).name)

    def subscribe(self) -> None:
        self.runtime.broker.subscriber(
            self.runtime.topic(self.topic.name),
            group_id=self.runtime.topic(f"tsunagu-{self.name}"),
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=readable_headers,
            # The value is decoded by the contracts, never by FastStream: a record that is not
            # JSON must reach `decode` and the dead letters, not fail before the handler.
            decoder=raw_value,
        )(self.on_message)

    async def on_message(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        try:
            envelope = decode(raw.headers, raw.value)
        except Exception as exc:  # noqa: BLE001 - decoding touches nothing but the record: its fault, whatever it raises
            await self.dead_letter(raw, exc, attempts=1)
            return
        handler = self.handlers.get(type(envelope.data))
        if handler is None:
            self.count("skipped")  # an event on this topic that this service does not act on
            return
        await self.apply(envelope, handler, raw)

    def count(self, outcome: str) -> None:
        self.runtime.consumed.labels(self.topic.name, outcome).inc()

    async def apply(self, envelope: Envelope, handler: Handler, raw: Any) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                applied = await self.apply_once(envelope, handler)
                self.count("applied" if applied else "duplicate")
                if self.runtime.settings.failpoint == "after-commit-before-ack":
                    # Fault injection for the crash tests: die between the database commit and the
                    # offset commit, the window exactly-once effects must survive.
                    os.kill(os.getpid(), signal.SIGKILL)
                return
            except INFRASTRUCTURE_ERRORS:
                log.warning("%s: infrastructure unavailable applying %s; will retry the record",
                            self.name, envelope.type)
                await asyncio.sleep(self.retry.infrastructure_pause)
                raise
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                if attempt == self.retry.attempts:
                    await self.dead_letter(raw, exc, attempts=attempt)
                    return
                log.info("%s: %s failed (attempt %d): %s", self.name, envelope.type, attempt, type(exc).__name__)
                await asyncio.sleep(self.retry.delay(attempt))

    async def apply_once(self, envelope: Envelope, handler: Handler) -> bool:
        """Run the handler in one transaction with the applied-event record; False if already applied."""
        async with self.runtime.db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                self.name, envelope.id)
            if status == "INSERT 0 0":
                return False
            await handler(conn, envelope)
        return True

    async def dead_letter(self, raw: Any, error: Exception, attempts: int) -> None:
        # The error names a type and a field, never the record's content.
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]
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
