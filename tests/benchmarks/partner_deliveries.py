"""Benchmark: webhook deliveries per second to a fast receiver, and the delay a hanging receiver adds.

    make bench-partners   (or: .venv/bin/python tests/benchmarks/partner_deliveries.py --cases 300)

Runs partner-notification as a real process; events for N cases (consent for the partners, then
the consultation) are written straight to its input topic. Round 1: one fast partner. Round 2: the
fast partner and one whose endpoint never answers (it hangs until the request timeout). Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from tsunagu_contracts import INTAKE_CASES, ConsentGranted, ConsultationRegistered, encode, uuid7
from tsunagu_servicehost.auth import Role
from tsunagu_teststack.databases import ScratchDatabases
from tsunagu_teststack.infrastructure import provide
from tsunagu_teststack.kafka_access import close_namespace_access, open_namespace_access
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.tokens import bearer_token
from tsunagu_topics import ensure_topics
from tsunagu_topics.create import delete_namespace


def events_for(partner_ids: list[str]) -> list:
    case, person = uuid7(), uuid7()
    base = {"case_id": case, "municipality_code": "142166", "occurred_at": "2026-11-27T10:00:00+09:00"}
    consents = [ConsentGranted(**base, consent_id=uuid7(), person_ref=person,
                               recipient={"kind": "partner", "partner_id": p}, purpose="referral", method="written")
                for p in partner_ids]
    return [*consents, ConsultationRegistered(**base, consultation_id=uuid7(), person_ref=person, counter="tax",
                                              channel="counter", urgency="high", needs=["no_food"],
                                              primary_need="no_food", known_person=False)]


async def sender_figures(database_url: str, partner_id: str) -> tuple[float, float, float]:
    """From the delivery log: deliveries/s, and p50/p95 ms from queued to delivered, for one partner."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) / extract(epoch FROM max(delivered_at) - min(created_at)) AS rate, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) AS p50, "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) AS p95 "
            "FROM deliveries WHERE partner_id = $1 AND status = 'delivered'", uuid.UUID(partner_id))
    finally:
        await conn.close()
    return float(row["rate"]), row["p50"] * 1000, row["p95"] * 1000


async def round_trip(partners_url, headers, server, producer, topic, cases: int, hang: bool) -> tuple[float, list]:
    fast = Receiver()
    names = {"fast": fast} | ({"hang": Receiver(hang=3600)} if hang else {})
    ids = []
    async with httpx.AsyncClient(base_url=partners_url, headers=headers, timeout=30) as http:
        for name, receiver in names.items():
            created = (await http.post("/v1/partners", json={
                "name": name, "need_categories": ["no_food"], "areas": ["142166"],
                "contact": {"department": "desk", "email": "desk@example.org"},
                "webhook_url": server.add(f"{name}-{secrets.token_hex(3)}", receiver)})).json()
            ids.append(created["partner_id"])
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(cases):
        for event in events_for(ids):
            record = encode(event)
            await producer.send(topic, record.value, key=record.key, headers=record.headers)
        sent_at[str(event.case_id)] = time.perf_counter()
    await producer.flush()
    while len(fast.received) < cases:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    loop_to_perf = time.perf_counter() - asyncio.get_running_loop().time()
    latencies = [r.at + loop_to_perf - sent_at[r.event["subject"]] for r in fast.received]
    return cases / elapsed, latencies, ids[0]


async def main(cases: int) -> None:
    with ExitStack() as resources:
        infra = provide(resources)
        namespace = f"bench-{secrets.token_hex(3)}."
        await ensure_topics(infra.kafka_bootstrap, namespace=namespace, credentials=infra.kafka_admin)
        access = await open_namespace_access(infra, namespace)
        databases = ScratchDatabases(infra.postgres_admin_dsn)
        service = ServiceProcess("partner-notification", kafka_bootstrap=infra.kafka_bootstrap,
                                 database_url=await databases.create("partners"),
                                 log_dir=Path(tempfile.mkdtemp(prefix="tsunagu-bench-")),
                                 extra_env={"TSUNAGU_TOPIC_NAMESPACE": namespace, "TSUNAGU_PARTNERS_TIMEOUT_S": "5"},
                                 kafka_credentials=access.credentials("partner-notification"))
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=5, **infra.kafka_options)
        try:
            await service.migrate()
            await service.start()
            await producer.start()
            await asyncio.sleep(3)
            headers = {"Authorization": f"Bearer {bearer_token(Role.COORDINATOR, 'bench')}"}
            async with ReceiverServer() as server:
                topic = namespace + INTAKE_CASES.name
                rate, alone, fast_1 = await round_trip(service.url, headers, server, producer, topic, cases, False)
                rate_hang, beside, fast_2 = await round_trip(service.url, headers, server, producer, topic, cases,
                                                             True)
            q = lambda xs, p: sorted(xs)[int(len(xs) * p)] * 1000  # noqa: E731
            s1 = await sender_figures(service.database_url, fast_1)
            s2 = await sender_figures(service.database_url, fast_2)
            print(f"cases: {cases}; one webhook delivery per case to the fast receiver")
            print("end to end (publish -> receiver; includes consuming the events):")
            print(f"  fast receiver alone:        {rate:7.1f} cases/s, latency p50 {q(alone, .5):7.1f} ms, "
                  f"p95 {q(alone, .95):7.1f} ms")
            print(f"  beside a hanging receiver:  {rate_hang:7.1f} cases/s, latency p50 {q(beside, .5):7.1f} ms, "
                  f"p95 {q(beside, .95):7.1f} ms")
            print("webhook sender only (queued -> delivered, from the delivery log):")
            print(f"  fast receiver alone:        {s1[0]:7.1f} deliveries/s, p50 {s1[1]:7.1f} ms, p95 {s1[2]:7.1f} ms")
            print(f"  beside a hanging receiver:  {s2[0]:7.1f} deliveries/s, p50 {s2[1]:7.1f} ms, p95 {s2[2]:7.1f} ms")
            print(f"delay the hanging receiver adds to the fast one (sender p50): {s2[1] - s1[1]:+.1f} ms")
        finally:
            await producer.stop()
            await service.stop()
            await databases.drop_all()
            await close_namespace_access(infra, access)
            await delete_namespace(infra.kafka_bootstrap, namespace, credentials=infra.kafka_admin)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300)
    asyncio.run(main(parser.parse_args().cases))
