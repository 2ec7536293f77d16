"""A service's consumers ask to join their group together, so a start costs one rebalance, not one per consumer."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from tsunagu_servicehost.app import build_broker
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_telemetry import tracer_provider


def a_broker_with_consumers(*topics: str):
    settings = ServiceSettings(http_port=1, kafka_bootstrap="127.0.0.1:9", database_url="postgresql://unused@localhost/x",
                               kafka_security_protocol="PLAINTEXT")
    broker = build_broker("example", settings, CollectorRegistry(), tracer_provider("example"))
    for topic in topics:
        broker.subscriber(topic, group_id="tsunagu-example")(lambda body: None)
    return broker


def joining_in_turn(broker, steps: list[str], fails: str | None = None) -> None:
    """Each consumer's start asks to join, waits for the group (a turn of the event loop), then has its partitions."""
    async def no_connection():
        return None

    broker.connect = no_connection
    for subscriber in broker.subscribers:
        topic = subscriber.topics[0].name

        async def start(topic=topic):
            steps.append(f"{topic} asks to join")
            await asyncio.sleep(0)
            if topic == fails:
                raise PermissionError(f"{topic}: not authorized")
            steps.append(f"{topic} has its partitions")

        subscriber.start = start


async def test_every_consumer_asks_to_join_before_any_waits_for_its_partitions():
    broker = a_broker_with_consumers("cases", "responses", "tenancies")
    steps: list[str] = []
    joining_in_turn(broker, steps)

    await broker.start()

    assert sorted(steps[:3]) == ["cases asks to join", "responses asks to join", "tenancies asks to join"]
    assert sorted(steps[3:]) == ["cases has its partitions", "responses has its partitions",
                                 "tenancies has its partitions"]
    assert broker.running


async def test_a_consumer_that_cannot_start_stops_the_start_with_its_reason():
    broker = a_broker_with_consumers("cases", "responses")
    joining_in_turn(broker, [], fails="responses")

    with pytest.raises(PermissionError, match="responses: not authorized"):
        await broker.start()

    assert not broker.running
