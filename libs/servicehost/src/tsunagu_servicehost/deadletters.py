"""Dead letters: writing a record to its service's dead-letter topic exactly as it was read, and
replaying them onto the topics they came from, once the cause is fixed.

`python -m <service> replay-dead-letters` reads the service's dead-letter topic with a consumer
group of its own, puts each record back on its original topic (same key, value and CloudEvents
headers, so consumers still recognise an event already applied), commits, and stops when it has
caught up. A record that fails again simply returns to the dead letters.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tsunagu_contracts import dead_letter_topic
from tsunagu_servicehost.publishing import ServiceProducer
from tsunagu_servicehost.service import Service
from tsunagu_servicehost.settings import ServiceSettings

DLQ_PREFIX = "x-dlq-"


def replay_group(namespace: str, service: str) -> str:
    """The consumer group `replay-dead-letters` commits in: what it has not reached is still waiting."""
    return f"{namespace}tsunagu-{service}-replay"


class DeadLetterWriter(ServiceProducer):
    """Writes dead letters with their original key, value and header bytes.

    Not through the FastStream broker: its publisher takes header values as text, and a record is
    often dead-lettered precisely because a header is not UTF-8. The original `traceparent` travels
    on unchanged, so the dead letter stays in its case's trace.
    """

    async def write(self, topic: str, key: bytes | None, value: bytes | None,
                    headers: list[tuple[str, bytes | None]]) -> None:
        await self.started.send_and_wait(topic, value, key=key, headers=headers)


async def replay(service: Service, settings: ServiceSettings, *, limit: int | None = None) -> int:
    """Dead letters back onto their original topics. Those are other services' topics, which the
    service's own Kafka user may not write (ACLs): run it with the operations (admin) user's
    TSUNAGU_KAFKA_USERNAME and TSUNAGU_KAFKA_PASSWORD."""
    topic = settings.topic_namespace + dead_letter_topic(service.name).name
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=replay_group(settings.topic_namespace, service.name),
        enable_auto_commit=False, auto_offset_reset="earliest", **settings.kafka_options)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True,
                                **settings.kafka_options)
    await consumer.start()
    await producer.start()
    replayed = 0
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)

        async def caught_up() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < ends[tp]:
                    return False
            return True

        while (limit is None or replayed < limit) and not await caught_up():
            room = 100 if limit is None else min(100, limit - replayed)
            batch = await consumer.getmany(timeout_ms=1000, max_records=room)
            for tp, records in batch.items():
                for record in records:
                    headers = dict(record.headers or [])
                    original = headers.get(f"{DLQ_PREFIX}topic", b"").decode()
                    if original:
                        await producer.send_and_wait(
                            original, record.value, key=record.key,
                            headers=[(k, v) for k, v in (record.headers or []) if not k.startswith(DLQ_PREFIX)])
                        replayed += 1
                    await consumer.commit({tp: record.offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed


def replay_command(service: Service, settings: ServiceSettings, limit: int | None) -> None:
    count = asyncio.run(replay(service, settings, limit=limit))
    print(f"[tsunagu] {service.name}: {count} dead letter(s) replayed onto their original topics")
