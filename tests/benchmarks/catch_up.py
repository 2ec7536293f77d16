"""Catching up: a consumer started behind a backlog, next to raw aiokafka relaying the same records.

    make bench-catch-up   (or: .venv/bin/python tests/benchmarks/catch_up.py --events 100000)

A topic namespace of its own gets a backlog on referral's referrals topic: ReferralRequested then
ReferralAccepted for many referrals on many cases, encoded as referral writes them, by the admin.
Then, in the same run and on the same records:

- raw relay: an aiokafka consumer reads the backlog and an aiokafka producer writes every record to
  another topic, committing the offsets after each batch the broker gives; the floor of what any
  consumer on this broker and machine can do;
- applied: the intake service starts behind the backlog, and its consumer applies every event with
  its database effects (each case's view of its referrals and the applied-event records), exactly
  once; counted from the first event applied to the last;
- rebuilt: referral's `rebuild-reports` empties its report read model and applies the whole log
  again.

Prints events/s for each and the ratio of applied to relayed; asserts nothing. The machine may be
shared: repeat the run and report every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tsunagu_contracts import REFERRALS, ReferralAccepted, ReferralRequested, encode, uuid7
from tsunagu_referral.entrypoints.rebuild import rebuild
from tsunagu_servicehost.app import settle_garbage_collection
from tsunagu_servicehost import ServiceSettings
from tsunagu_teststack.bench import running
from tsunagu_teststack.infrastructure import Infrastructure

RELAYED = "bench.relayed.v1"
NEEDS = ("housing", "income", "debt", "health", "no_food", "job_search")


def backlog(events: int) -> list:
    """`events` records: each referral asked, then accepted a few hours later; two referrals a case."""
    requested = ReferralRequested.model_json_schema()["examples"][0]
    accepted = ReferralAccepted.model_json_schema()["examples"][0]
    start = datetime(2026, 10, 1, tzinfo=UTC)
    records = []
    case_id = None
    for i in range(events // 2):
        if i % 2 == 0:
            case_id = str(uuid7())
        referral_id, at = str(uuid7()), start + timedelta(minutes=i)
        records.append(encode(ReferralRequested.model_validate({
            **requested, "case_id": case_id, "referral_id": referral_id, "sheet_id": str(uuid7()),
            "need": NEEDS[i % len(NEEDS)], "occurred_at": at.isoformat()})))
        records.append(encode(ReferralAccepted.model_validate({
            **accepted, "case_id": case_id, "referral_id": referral_id,
            "occurred_at": (at + timedelta(hours=3 + i % 20)).isoformat()})))
    return records


async def write(infra: Infrastructure, topic: str, records: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=20, max_batch_size=262144,
                                **infra.kafka_options)
    await producer.start()
    try:
        for i in range(0, len(records), 5000):
            sent = [await producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records[i:i + 5000]]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def relay(infra: Infrastructure, namespace: str, events: int) -> float:
    """Raw aiokafka: read the backlog, write each record to another topic, commit after each batch."""
    consumer = AIOKafkaConsumer(namespace + REFERRALS.name, bootstrap_servers=infra.kafka_bootstrap,
                                group_id=namespace + "bench-relay", auto_offset_reset="earliest",
                                enable_auto_commit=False, **infra.kafka_options)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=5, **infra.kafka_options)
    await consumer.start()
    await producer.start()
    try:
        relayed, started = 0, None
        while relayed < events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if started is None and batch:
                started = time.perf_counter()
            sent = [await producer.send(namespace + RELAYED, r.value, key=r.key, headers=list(r.headers))
                    for records in batch.values() for r in records]
            await asyncio.gather(*sent)
            await consumer.commit()
            relayed += len(sent)
        return relayed / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


CONSUMER = "intake"
"""Whose catching up is measured: intake's consumer of the referrals topic."""


async def applied_rate(database_url: str, events: int) -> float:
    """Events/s intake's consumer applied, from its first transaction to its last: each applied
    event's record carries its transaction's start (`applied_at`), so the service's start-up and
    the polling here are not counted; nor are the events of the first transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        while await conn.fetchval("SELECT count(*) FROM applied_events WHERE consumer = $1", CONSUMER) < events:
            await asyncio.sleep(0.2)
        first, last, after_first = await conn.fetchrow(
            "SELECT min(applied_at), max(applied_at), count(*) FILTER (WHERE applied_at > "
            "(SELECT min(applied_at) FROM applied_events WHERE consumer = $1)) FROM applied_events "
            "WHERE consumer = $1", CONSUMER)
        return after_first / (last - first).total_seconds() if last > first else float("nan")
    finally:
        await conn.close()


async def rebuilt_rate(settings: ServiceSettings) -> tuple[float, int]:
    settle_garbage_collection()  # as `rebuild-reports` does before it starts
    started = time.perf_counter()
    done = await rebuild(settings)
    return done.events / (time.perf_counter() - started), done.events


async def main(events: int) -> None:
    print(f"encoding {events} events …")
    records = backlog(events)
    figures: dict[str, float] = {}

    async def fill(infra: Infrastructure, namespace: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap, **infra.kafka_options)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(namespace + RELAYED, REFERRALS.partitions, 1)])
        finally:
            await admin.close()
        started = time.perf_counter()
        await write(infra, namespace + REFERRALS.name, records)
        print(f"backlog written: {events} records in {time.perf_counter() - started:.1f}s")
        figures["relay"] = await relay(infra, namespace, events)
        print(f"raw aiokafka relay (consume → produce, commit per batch): {figures['relay']:,.0f} records/s")
        records.clear()  # the rebuild below runs in this process: without the backlog, as the command would

    async with running("referral", "intake", before_start=fill, settle_s=0) as services:  # intake last: alone catching up
        referral = services["referral"]
        figures["applied"] = await applied_rate(services["intake"].database_url, events)
        print(f"intake's consumer caught up:  {figures['applied']:,.0f} events/s applied with their database effects")
        print(f"ratio applied / raw relay:    {figures['applied'] / figures['relay']:.3f}   (target ≥ 0.05)")
        with mock.patch.dict(os.environ, referral.env):
            settings = ServiceSettings()
        rate, rebuilt = await rebuilt_rate(settings)
        print(f"read model rebuilt from the log: {rebuilt} events, {rate:,.0f} events/s   (target ≥ 20,000)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().events))
