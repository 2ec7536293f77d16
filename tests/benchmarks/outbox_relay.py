"""The outbox relay's rate: rows published per second from a service's outbox to the real broker.

    .venv/bin/python tests/benchmarks/outbox_relay.py --rows 2000

A topic namespace and a scratch database of their own get an outbox of `--rows` rows for one topic,
which the relay drains (`OutboxRelay.drain`, batches of 200) through the publisher a service builds
(its own idempotent producer, acks=all), in three shapes:

- one row a case: each lane's publish is one record, all of a batch's lanes in flight together;
- four rows a case (a consultation's events): each case's four rows go as one record batch;
- one case: every row in one lane, a batch of 200 rows in one record batch.

Prints rows/s for each; asserts nothing. The machine may be shared: run it once, briefly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import asyncpg
from tsunagu_contracts import ConsultationRegistered, topic_for_event
from tsunagu_outbox import ATTEMPT_STATEMENTS, SCHEMA_STATEMENTS, OutboxRelay
from tsunagu_servicehost.publishing import OutboxPublisher
from tsunagu_telemetry import tracer_provider
from tsunagu_teststack.bench import running
from tsunagu_teststack.databases import ScratchDatabases
from tsunagu_teststack.infrastructure import Infrastructure

TOPIC = topic_for_event(ConsultationRegistered).name
RECORDS_PER_CASE = 4


async def rate(pool: asyncpg.Pool, relay: OutboxRelay, rows: int, cases: int) -> float:
    keys = [str(uuid.uuid4()) for _ in range(cases)]
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE outbox")
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, record_key, headers, value) VALUES ($1, $2, $3, $4, $5)",
            [(uuid.uuid4(), TOPIC, keys[i % cases], json.dumps({"ce_type": "tsunagu.bench.v1"}),
              json.dumps({"n": i, "pad": "x" * 400}).encode()) for i in range(rows)])
        started = time.perf_counter()
        published = 0
        while count := await relay.drain(conn):
            published += count
        elapsed = time.perf_counter() - started
    assert published == rows, f"published {published} of {rows}"
    return rows / elapsed


async def main(rows: int) -> None:
    async def measure(infra: Infrastructure, namespace: str) -> None:
        databases = ScratchDatabases(infra.postgres_admin_dsn)
        publisher = OutboxPublisher(infra.kafka_bootstrap, "tsunagu-bench-outbox",
                                    tracer_provider("bench").get_tracer("bench"), infra.kafka_options)
        pool = await asyncpg.create_pool(await databases.create("bench_outbox"), min_size=1, max_size=2)
        await publisher.start()
        try:
            async with pool.acquire() as conn:
                for statement in SCHEMA_STATEMENTS + ATTEMPT_STATEMENTS:
                    await conn.execute(statement)
            relay = OutboxRelay(pool, lambda topic, records: publisher.publish(namespace + topic, records))
            await rate(pool, relay, 200, 50)  # warm-up: connections, metadata, producer id
            for label, cases in (("one row a case", rows), (f"{RECORDS_PER_CASE} rows a case", rows // RECORDS_PER_CASE),
                                 ("one case", 1)):
                print(f"{label}, {rows} rows: {await rate(pool, relay, rows, cases):,.0f} rows/s")
        finally:
            await publisher.stop()
            await pool.close()
            await databases.drop_all()

    async with running(before_start=measure, settle_s=0):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rows))
