"""The relay keeps order per topic and key, parks what the broker keeps refusing, and moves on.

A real PostgreSQL database holds the outbox; the broker is one this test controls, so that it can
refuse a record, lack a topic or be down on demand.
"""

import asyncio
import json
import uuid

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from tsunagu_contracts import KafkaRecord
from tsunagu_outbox import (
    ATTEMPT_STATEMENTS, NOTIFY_CHANNEL, SCHEMA_STATEMENTS, OutboxMetrics, OutboxRelay, RelayPolicy, parked, release_parked,
)
from tsunagu_outbox.relay import BrokerUnavailable
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
POLICY = RelayPolicy(max_attempts=3, first_retry_s=0.05, max_retry_s=0.05, parked_retry_s=3600, publish_timeout_s=1)


class NotEnoughReplicas(Exception):
    retriable = True  # as the Kafka client marks errors that go away by themselves


class Broker:
    """Takes a lane's records together like Kafka takes a record batch, whole or not at all, except
    those it was told to refuse."""

    def __init__(self):
        self.published: list[tuple[str, str, int]] = []
        self.sends: list[list[int]] = []
        self.tries: dict[int, int] = {}
        self.refused: set[int] = set()
        self.unsteady: set[int] = set()
        self.missing_topics: set[str] = set()
        self.asked_about: list[str] = []
        self.cut_off: set[int] = set()
        self.down = False

    async def publish(self, topic: str, records: list[KafkaRecord]) -> None:
        assert len({record.key for record in records}) == 1, "one lane's records at a time"
        ns = [json.loads(record.value)["n"] for record in records]
        self.sends.append(ns)
        for n in ns:
            self.tries[n] = self.tries.get(n, 0) + 1
        if self.down or self.cut_off & set(ns):
            raise ConnectionError("connection refused")
        if topic in self.missing_topics:
            raise TimeoutError  # the client waits for metadata that never comes
        if self.refused & set(ns):
            raise ValueError("MessageSizeTooLargeError: the message is 2000000 bytes")
        if self.unsteady & set(ns):
            raise NotEnoughReplicas("the partition has too few in-sync replicas")
        self.published += [(topic, record.key.decode(), n) for record, n in zip(records, ns, strict=True)]

    async def up(self) -> bool:
        return not self.down and not self.cut_off

    async def has(self, topic: str) -> bool:
        self.asked_about.append(topic)
        return topic not in self.missing_topics


@pytest.fixture
async def pool(scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        for statement in SCHEMA_STATEMENTS + ATTEMPT_STATEMENTS:
            await conn.execute(statement)
    yield pool
    await pool.close()


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def relay(pool, broker, registry) -> OutboxRelay:
    return OutboxRelay(pool, broker.publish, policy=POLICY, metrics=OutboxMetrics(registry), broker_up=broker.up,
                       topic_exists=broker.has)


async def write(pool, *rows: tuple[str, str, int]) -> None:
    """Rows (topic, key, n) committed in one transaction, in this order."""
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, record_key, headers, value) VALUES ($1, $2, $3, $4, $5)",
            [(uuid.uuid4(), topic, key, json.dumps({"ce_type": "tsunagu.test.v1"}), json.dumps({"n": n}).encode())
             for topic, key, n in rows])


async def settle(relay: OutboxRelay, pool, rounds: int = 30) -> None:
    """Drain as the relay's sweep would, long enough for every retry the policy allows before parking."""
    for _ in range(rounds):
        async with pool.acquire() as conn:
            await relay.drain(conn)
        await asyncio.sleep(0.06)
    async with pool.acquire() as conn:
        await relay.measure(conn)


async def attempts(pool) -> dict[int, tuple[int, bool]]:
    rows = await pool.fetch("SELECT value, attempts, parked_at IS NOT NULL AS parked FROM outbox")
    return {json.loads(r["value"])["n"]: (r["attempts"], r["parked"]) for r in rows}


async def test_a_refused_record_is_parked_after_its_attempts_and_only_its_own_lane_waits(
        relay, pool, broker, registry):
    broker.refused = {1}
    await write(pool, ("cases", "A", 1), ("cases", "A", 2), ("cases", "B", 3), ("partner", "A", 4))

    await settle(relay, pool)
    await write(pool, ("cases", "A", 5))  # news of the stuck case, written after the parking
    await settle(relay, pool, rounds=3)

    assert broker.published == [("cases", "B", 3), ("partner", "A", 4)], "other keys, and other topics, move"
    assert broker.sends[0] == [1, 2] and broker.sends.count([1]) == 3, \
        "refused with the row behind it, then alone: three attempts, then parked"
    assert broker.tries[1] == 4 and broker.tries[2] == 1, "never sent again with the rows behind it"
    assert (await attempts(pool))[1] == (3, True)
    assert (await attempts(pool))[2] == (0, False), "behind it on its topic and key, and not counted"
    assert registry.get_sample_value("tsunagu_outbox_parked") == 1
    assert registry.get_sample_value("tsunagu_outbox_held_behind_parked") == 2
    assert registry.get_sample_value("tsunagu_outbox_backlog") == 0
    assert registry.get_sample_value("tsunagu_outbox_publish_failures_total") == 3
    async with pool.acquire() as conn:
        listed = await parked(conn)
    assert [(r["topic"], r["behind"], r["last_error"]) for r in listed] == [
        ("cases", 2, "ValueError: MessageSizeTooLargeError: the message is 2000000 bytes")]

    broker.refused.clear()  # the cause is fixed
    async with pool.acquire() as conn:
        released = await release_parked(conn)
    await settle(relay, pool, rounds=2)

    assert len(released) == 1
    assert broker.published[2:] == [("cases", "A", 1), ("cases", "A", 2), ("cases", "A", 5)], "in order"
    assert registry.get_sample_value("tsunagu_outbox_parked") == 0
    assert registry.get_sample_value("tsunagu_outbox_held_behind_parked") == 0


async def test_a_parked_record_is_tried_again_by_itself_after_a_while(pool, broker):
    relay = OutboxRelay(pool, broker.publish, policy=RelayPolicy(
        max_attempts=1, first_retry_s=0.05, parked_retry_s=0.2, publish_timeout_s=1), broker_up=broker.up)
    broker.refused = {1}
    await write(pool, ("cases", "A", 1), ("cases", "A", 2))
    await settle(relay, pool, rounds=2)
    assert (await attempts(pool))[1] == (1, True)

    broker.refused.clear()
    await settle(relay, pool, rounds=6)

    assert broker.published == [("cases", "A", 1), ("cases", "A", 2)]
    assert (await attempts(pool))[1][1] is False, "published, so no longer parked"


async def test_an_outage_counts_against_no_record_and_publishes_nothing_out_of_order(relay, pool, broker):
    await write(pool, ("cases", "A", 1), ("cases", "B", 2))
    broker.down = True

    async with pool.acquire() as conn:
        with pytest.raises(BrokerUnavailable):
            await relay.drain(conn)

    assert await attempts(pool) == {1: (0, False), 2: (0, False)}
    assert broker.tries == {1: 1, 2: 1}, "each lane was sent once, and nothing after it"

    broker.down = False
    await settle(relay, pool, rounds=1)
    assert broker.published == [("cases", "A", 1), ("cases", "B", 2)]


async def test_a_missing_topic_fails_its_rows_without_waiting_on_each(relay, pool, broker):
    broker.missing_topics = {"partner.gone"}
    await write(pool, ("partner.gone", "A", 1), ("partner.gone", "B", 2), ("partner.gone", "C", 3), ("cases", "D", 4))

    async with pool.acquire() as conn:
        await relay.drain(conn)

    assert broker.tries == {1: 1, 2: 1, 3: 1, 4: 1}, "sent together, so the waits for the topic overlap"
    assert broker.asked_about == ["partner.gone"], "one question about the topic, not one per record"
    assert broker.published == [("cases", "D", 4)]
    assert {n: a for n, a in (await attempts(pool)).items() if n < 4} == {1: (1, False), 2: (1, False),
                                                                           3: (1, False)}


async def test_a_transient_failure_is_retried_in_its_lane_and_never_parks(relay, pool, broker):
    broker.unsteady = {1}
    await write(pool, ("cases", "A", 1), ("cases", "A", 2), ("cases", "B", 3))

    await settle(relay, pool, rounds=12)
    assert broker.tries[1] > POLICY.max_attempts and (await attempts(pool))[1][1] is False, "retried, not parked"
    assert broker.published == [("cases", "B", 3)]

    broker.unsteady.clear()
    await settle(relay, pool, rounds=3)
    assert broker.published[1:] == [("cases", "A", 1), ("cases", "A", 2)]


async def test_rows_the_broker_took_are_marked_even_when_another_lane_sent_with_them_found_the_broker_down(
        relay, pool, broker):
    broker.cut_off = {1}
    await write(pool, ("cases", "A", 1), ("cases", "B", 2), ("cases", "B", 3), ("cases", "A", 4))

    async with pool.acquire() as conn:
        with pytest.raises(BrokerUnavailable):
            await relay.drain(conn)

    assert broker.published == [("cases", "B", 2), ("cases", "B", 3)]
    assert broker.sends == [[1, 4], [2, 3]], "the outage stops the relay: the failed lane is not sent one by one"
    assert await attempts(pool) == {1: (0, False), 2: (0, False), 3: (0, False), 4: (0, False)}, "nothing counted"
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == 2

    broker.cut_off.clear()
    await settle(relay, pool, rounds=1)
    assert broker.published[2:] == [("cases", "A", 1), ("cases", "A", 4)], "nothing published twice"


async def test_while_one_lane_fails_the_other_lanes_of_the_batch_are_published_in_order(
        relay, pool, broker, registry):
    broker.refused = {2}
    await write(pool, ("cases", "A", 1), ("cases", "B", 2), ("cases", "A", 3), ("cases", "B", 4),
                ("cases", "C", 5), ("cases", "A", 6), ("cases", "B", 7), ("cases", "C", 8))

    async with pool.acquire() as conn:
        published = await relay.drain(conn)

    assert published == 5
    lanes = {key: [n for _, k, n in broker.published if k == key] for key in "ABC"}
    assert lanes == {"A": [1, 3, 6], "B": [], "C": [5, 8]}
    assert broker.sends[3:] == [[2]], "the failed lane's rows sent again one by one, stopping at the failed row"
    assert (await attempts(pool))[2] == (1, False)
    assert (await attempts(pool))[4] == (0, False), "only the row that failed alone is counted"
    assert registry.get_sample_value("tsunagu_outbox_published_total") == 5
    assert registry.get_sample_value("tsunagu_outbox_publish_failures_total") == 1


async def test_each_lane_is_sent_as_one_publish_in_order_and_the_lanes_are_in_flight_together(pool):
    in_flight = most_at_once = 0
    sends: list[tuple[str, str, list[int]]] = []

    async def publish(topic: str, records: list[KafkaRecord]) -> None:
        nonlocal in_flight, most_at_once
        in_flight += 1
        most_at_once = max(most_at_once, in_flight)
        sends.append((topic, records[0].key.decode(), [json.loads(record.value)["n"] for record in records]))
        for _ in range(3):  # the acknowledgement comes later; let the relay start other publishes meanwhile
            await asyncio.sleep(0)
        in_flight -= 1

    relay = OutboxRelay(pool, publish, policy=POLICY)
    await write(pool, *[(topic, key, n) for n in range(4) for topic in ("cases", "partner") for key in "ABC"])

    async with pool.acquire() as conn:
        assert await relay.drain(conn) == 24

    assert sorted(sends) == [(topic, key, [0, 1, 2, 3]) for topic in ("cases", "partner") for key in "ABC"], \
        "one publish per lane, its rows in their order"
    assert most_at_once == 6, "every lane was sent before any was acknowledged"


async def test_a_lane_longer_than_one_batch_goes_in_runs_each_after_the_previous_one_was_acknowledged(pool):
    in_flight: dict[str, int] = {}
    sends: list[list[int]] = []
    most_of_one_lane = 0

    async def publish(topic: str, records: list[KafkaRecord]) -> None:
        nonlocal most_of_one_lane
        lane = records[0].key.decode()
        in_flight[lane] = in_flight.get(lane, 0) + 1
        most_of_one_lane = max(most_of_one_lane, in_flight[lane])
        sends.append([json.loads(record.value)["n"] for record in records])
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight[lane] -= 1

    row_bytes = len("A") + len(json.dumps({"n": 1})) + len(json.dumps({"ce_type": "tsunagu.test.v1"}))
    relay = OutboxRelay(pool, publish, policy=RelayPolicy(batch_bytes=2 * row_bytes))
    await write(pool, *[("cases", "A", n) for n in range(1, 6)], ("cases", "B", 6))

    async with pool.acquire() as conn:
        assert await relay.drain(conn) == 6

    assert sends == [[1, 2], [6], [3, 4], [5]], "two rows' worth at a time, in order, other lanes alongside"
    assert most_of_one_lane == 1, "a lane's next run only after its previous run was acknowledged"


async def test_the_relay_gives_its_connection_back_without_its_lock_listener_or_settings(
        scratch_database, broker):
    async def nothing_sent(conn):  # as the services' pools are set up: the pool itself resets nothing
        pass

    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=2, reset=nothing_sent)
    relay = OutboxRelay(pool, broker.publish, policy=POLICY)
    task = asyncio.create_task(relay.run())
    for _ in range(100):  # until it holds the relay lock
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    held = [await pool.acquire() for _ in range(pool.get_max_size())]  # whichever the relay had
    try:
        for conn in held:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            assert await conn.fetch("SELECT pg_listening_channels()") == []
            assert not await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                           "AND pid = pg_backend_pid()")
    finally:
        for conn in held:
            await pool.release(conn)
        await pool.close()


async def test_a_row_committed_while_the_relay_publishes_is_published_without_waiting_for_the_sweep(
        pool, broker, scratch_database):
    sweep_s = 60.0  # far longer than this test waits: only the row's own notice can wake the relay
    writer = await asyncpg.connect(scratch_database)
    published_first = asyncio.Event()

    async def publish(topic: str, records: list[KafkaRecord]) -> None:
        await broker.publish(topic, records)
        if not published_first.is_set():  # a second row commits (and notifies) while the relay is busy
            published_first.set()
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO outbox (event_id, topic, record_key, headers, value) VALUES ($1, 't', 'b', $2, $3)",
                    uuid.uuid4(), json.dumps({"ce_type": "tsunagu.test.v1"}), json.dumps({"n": 2}).encode())
                await writer.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)

    relay = OutboxRelay(pool, publish, policy=POLICY, sweep_interval=sweep_s)
    task = asyncio.create_task(relay.run())
    try:
        await write(pool, ("t", "a", 1))
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        await eventually(lambda: asyncio.sleep(0, [n for _, _, n in broker.published]),
                         until=lambda ns: ns == [1, 2], attempts=50)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.close()


async def test_rows_are_marked_published_by_their_index_however_small_the_outbox_was_when_the_relay_started(
        pool, broker, scratch_database):
    # The relay keeps its connection for as long as it runs. After five executions PostgreSQL may
    # keep one plan per statement; planned on a nearly empty table, that plan scanned the whole
    # outbox for every batch once the table had grown.
    relay = OutboxRelay(pool, broker.publish, policy=POLICY, sweep_interval=0.02)
    task = asyncio.create_task(relay.run())

    async def batch_published(n: int) -> None:
        await write(pool, *[("cases", key, n) for key in "ABCDEF"])
        await eventually(lambda: asyncio.sleep(0, len(broker.published)), until=lambda sent: sent == 6 * (n + 1),
                         pause=0.02)

    try:
        for n in range(8):  # batches of several rows while the outbox is nearly empty
            await batch_published(n)
        await pool.execute(  # the table grows: rows published long ago
            "INSERT INTO outbox (event_id, topic, record_key, headers, value, published_at) "
            "SELECT gen_random_uuid(), 'cases', 'old', '{}', '', now() FROM generate_series(1, 20000)")
        for n in range(8, 12):
            await batch_published(n)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await pool.close()  # a backend reports its table statistics when it ends

    observer = await asyncpg.connect(scratch_database)
    try:
        await eventually(lambda: observer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                   "current_database() AND pid <> pg_backend_pid()"),
                         until=lambda others: others == 0, pause=0.05)
        rows_scanned = await observer.fetchval("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'outbox'")
    finally:
        await observer.close()
    assert rows_scanned < 20000, "no batch after the table grew read the whole outbox"
