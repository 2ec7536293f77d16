"""The fault matrix: the whole loop under load while a part of it dies, then a reconciliation.

Each fault runs a bounded, steady load of consultations (each with one need routed to a partner
and the person's consent), injects the fault, and checks that every consultation has its referral
and every referral reached the partner, with one webhook id per event: nothing lost, nothing
doubled, nothing held, nothing left in an outbox. Figures (latency, time to recover) are written
to var/test-output/fault-matrix.txt and printed; they are reported, never asserted.
"""

import asyncio
import random
import time

import pytest

from tsunagu_teststack.private import PrivateKafka, PrivatePostgres

pytestmark = [pytest.mark.stack, pytest.mark.faults]
RATE, SECONDS = 10.0, 20.0
LOAD = f"{RATE:g} consultations/s for {SECONDS:g} s"


def assert_kept_every_promise(report) -> None:
    report.write()
    assert (report.lost, report.doubled, report.held, report.outbox_backlog) == (0, 0, 0, 0), report.line()
    assert report.consultations == int(RATE * SECONDS)


async def under_load(loop, fault) -> None:
    """Drive the load and inject the fault at once; then wait until the loop has settled."""
    await asyncio.gather(loop.drive(RATE, SECONDS), fault())
    await loop.settle()


async def test_r1_each_service_killed_at_random_moments_under_load(infrastructure, loop_on):
    loop = await loop_on(infrastructure.kafka_bootstrap, infrastructure.postgres_admin_dsn)
    recovery: list[float] = []
    chance = random.Random(20261129)

    async def kill_each_service():
        for name in ("intake", "referral", "partner-notification", "referral", "partner-notification"):
            await asyncio.sleep(chance.uniform(1.0, 3.5))
            service = loop.services[name]
            await service.kill()
            began = time.monotonic()
            await asyncio.sleep(chance.uniform(0.2, 1.5))
            await service.start()
            await loop.ready(service)
            recovery.append(time.monotonic() - began)

    await under_load(loop, kill_each_service)
    report = await loop.reconcile("R1 SIGKILL intake, referral, partner-notification at random moments", LOAD)
    report.recovery_s = recovery
    assert_kept_every_promise(report)


async def test_r2_the_broker_killed_and_restarted_under_load(infrastructure, loop_on):
    kafka = PrivateKafka("faults-r2").start()
    try:
        loop = await loop_on(kafka.bootstrap, infrastructure.postgres_admin_dsn)
        recovery: list[float] = []

        async def kill_the_broker():
            await asyncio.sleep(5)
            kafka.kill()
            began = time.monotonic()
            await asyncio.sleep(3)
            await asyncio.to_thread(kafka.restart)
            recovery.append(time.monotonic() - began)

        await under_load(loop, kill_the_broker)
        report = await loop.reconcile("R2 SIGKILL the only broker, restarted after 3 s", LOAD)
        report.recovery_s = recovery
    finally:
        kafka.remove()
    assert_kept_every_promise(report)


async def test_r3_one_of_three_brokers_lost_under_load(infrastructure, loop_on):
    kafka = PrivateKafka("faults-r3", nodes=3).start()
    try:
        loop = await loop_on(kafka.bootstrap, infrastructure.postgres_admin_dsn)
        recovery: list[float] = []

        async def lose_a_broker():
            await asyncio.sleep(5)
            kafka.kill(2)
            began = time.monotonic()
            await asyncio.sleep(8)
            await asyncio.to_thread(kafka.restart, 2)
            recovery.append(time.monotonic() - began)

        await under_load(loop, lose_a_broker)
        report = await loop.reconcile("R3 one of three brokers (RF 3, min.insync 2) SIGKILLed, back after 8 s",
                                      LOAD)
        report.recovery_s = recovery
    finally:
        kafka.remove()
    assert_kept_every_promise(report)


async def test_r4_postgresql_restarted_under_load(infrastructure, loop_on):
    postgres = PrivatePostgres().start()
    try:
        loop = await loop_on(infrastructure.kafka_bootstrap, postgres.admin_dsn)
        recovery: list[float] = []

        async def restart_postgres():
            await asyncio.sleep(5)
            await asyncio.to_thread(postgres.stop, "immediate")
            began = time.monotonic()
            await asyncio.sleep(6)
            await asyncio.to_thread(postgres.start)
            await asyncio.gather(*(loop.ready(s) for s in loop.services.values()))
            recovery.append(time.monotonic() - began)

        await under_load(loop, restart_postgres)
        report = await loop.reconcile("R4 PostgreSQL crashed (immediate stop) for 6 s, restarted", LOAD)
        report.recovery_s = recovery
    finally:
        await loop.stop()
        postgres.remove()
    assert_kept_every_promise(report)
