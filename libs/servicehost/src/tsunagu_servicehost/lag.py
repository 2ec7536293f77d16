"""Consumer lag and unreplayed dead letters, read from the broker when `/metrics` is scraped.

Lag is the group's committed offset against the partition's end offset, as Kafka's own
`kafka-consumer-groups --describe` shows it: what the group has not yet applied and committed,
whichever instance holds the partition, and also while none does (every instance of a service
then reports the same figure; alert rules take the largest). A partition the group never
committed counts from its first record (the consumers start at `earliest`).

The same arithmetic over the dead-letter topic and the replay command's group gives the dead
letters still waiting for `replay-dead-letters`.

Three requests per scrape (topic metadata, the group's offsets, the partitions' ends and starts),
on clients of their own: the subscribers' consumers are never asked to do anything extra.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("tsunagu.servicehost.lag")


class KafkaOffsets:
    def __init__(self, registry: CollectorRegistry, bootstrap: list[str], client_id: str, *, group: str,
                 topics: Sequence[str], dead_letter_topic: str, dead_letter_group: str,
                 options: dict[str, str] | None = None):
        self.bootstrap, self.client_id, self.options = bootstrap, client_id, options or {}
        self.group, self.topics = group, topics  # `topics` fills as the subscribers register
        self.dead_letter_topic, self.dead_letter_group = dead_letter_topic, dead_letter_group
        self.lag = Gauge("tsunagu_consumer_lag_records", "Records not yet applied and committed by the service's "
                         "consumer group: end offset minus committed offset", ["group", "topic", "partition"],
                         registry=registry)
        self.dead_letters = Gauge("tsunagu_dead_letters", "Records on the service's dead-letter topic that "
                                  "replay-dead-letters has not put back yet", ["topic"], registry=registry)
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def refresh(self, timeout: float) -> None:
        """Read the offsets within `timeout` seconds. A broker that does not answer in time leaves the
        figures as they were, and the clients are built again next time."""
        try:
            async with asyncio.timeout(timeout):
                await self._start()
                await self._read()
        except Exception as exc:  # noqa: BLE001 - /readyz reports the broker; the figures wait for it
            log.debug("consumer lag not refreshed: %s", type(exc).__name__)
            await self.stop()

    async def _start(self) -> None:
        # Kept before they start, so that `stop` closes one whose start was cut short.
        if self.admin is None:
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                             **self.options)
            await self.admin.start()
        if self.consumer is None:
            # No group: it only asks for offsets, never joins or commits.
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                             group_id=None, enable_auto_commit=False, **self.options)
            await self.consumer.start()

    async def _read(self) -> None:
        topics = [*self.topics, self.dead_letter_topic]
        partitions = [TopicPartition(t["topic"], p["partition"])
                      for t in await self.admin.describe_topics(topics) if not t["error_code"]
                      for p in t["partitions"]]
        ends = await self.consumer.end_offsets(partitions)
        starts = await self.consumer.beginning_offsets(partitions)
        committed = await self.admin.list_consumer_group_offsets(self.group)
        replayed = await self.admin.list_consumer_group_offsets(self.dead_letter_group)

        def behind(tp: TopicPartition, offsets: dict) -> int:
            done = offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else starts[tp]
            return max(0, ends[tp] - max(done, starts[tp]))  # records deleted by retention are not waiting

        self.lag.clear()
        waiting = 0
        for tp in partitions:
            if tp.topic == self.dead_letter_topic:
                waiting += behind(tp, replayed)
            else:
                self.lag.labels(self.group, tp.topic, str(tp.partition)).set(behind(tp, committed))
        self.dead_letters.labels(self.dead_letter_topic).set(waiting)

    async def stop(self) -> None:
        admin, consumer, self.admin, self.consumer = self.admin, self.consumer, None, None
        # A client that never connected may fail to close: there is nothing to close then.
        if consumer is not None:
            with suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with suppress(Exception):
                await admin.close()
