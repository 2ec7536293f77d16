"""`python -m tsunagu_referral rebuild-reports`: empty the report read model and fill it again from
the log, from the earliest offset of every partition it reads up to where the log ended once the
model was empty, and from the service's own events still in its outbox then.

The service may keep running: the consumers that project events into the model as they come and
the rebuild apply each event once between them (adapters/reports.py says how), and events after the
rebuild's end are the live consumers'. The consumers' committed offsets are left as they are.

A rebuild is complete only while the log still holds every event: the topics keep records for their
`retention_ms` (30 days in the registry). When a partition no longer starts at offset 0, the broker
has deleted its oldest records, and the read model would lose the figures they made. The command
then changes nothing and says so, unless `--accept-partial` says to rebuild from what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tsunagu_contracts import Envelope, KafkaRecord, decode
from tsunagu_outbox import record_of
from tsunagu_referral.adapters.reports import ReportsStore
from tsunagu_referral.handlers.reports import OWN, PROJECTIONS, project
from tsunagu_servicehost import ServiceSettings
from tsunagu_servicehost.app import settle_garbage_collection

log = logging.getLogger("tsunagu.referral.reports")


@dataclass
class Rebuilt:
    events: int = 0
    """Events applied to the emptied read model."""
    already: int = 0
    """Events the live consumers applied first, while the rebuild ran."""
    unreadable: int = 0
    """Records that are not events (the live consumers dead-lettered them)."""


class LogIncomplete(Exception):
    """Retention deleted records the read model was built from."""


async def rebuild(settings: ServiceSettings, *, accept_partial: bool = False) -> Rebuilt:
    by_name = {settings.topic_namespace + topic.name: projections for topic, projections in PROJECTIONS.items()}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                client_id="tsunagu-referral-rebuild-reports",
                                **settings.kafka_options)
    await consumer.start()
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    done = Rebuilt()
    applying = None
    try:
        partitions = await partitions_of(settings, list(by_name))
        starts = await consumer.beginning_offsets(partitions)
        cut = sorted(f"{tp.topic}[{tp.partition}] from offset {offset}" for tp, offset in starts.items() if offset)
        if cut and not accept_partial:
            raise LogIncomplete("; ".join(cut))
        for line in cut:
            log.warning("rebuilding without the records retention deleted: %s", line)

        async with conn.transaction():
            await ReportsStore(conn).reset()
        # Every event the service projected before the reset emptied the model is applied again: one it
        # consumed was in the log by then; one of its own was in its outbox, and is read from there
        # while not yet published. The outbox is read before the log's end: an event published
        # between the two is in the log before that end.
        own = await unpublished(conn, settings.topic_namespace)
        ends = await consumer.end_offsets(partitions)
        await apply(conn, decoded([(by_name[topic], record) for topic, record in own], done), done)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        # One batch is applied while the next is fetched and decoded: the database and this process
        # work at once. Batches are applied one after another, so each partition keeps its order.
        applying: asyncio.Task | None = None
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=BATCH)
            events = decoded([(by_name[tp.topic], record) for tp, records in batch.items()
                              for record in records if record.offset < ends[tp]], done)
            if applying is not None:
                await applying
            applying = asyncio.create_task(apply(conn, events, done))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if applying is not None:
            await applying
    finally:
        if applying is not None and not applying.done():
            applying.cancel()
            await asyncio.gather(applying, return_exceptions=True)
        await conn.close()
        await consumer.stop()
    return done


async def unpublished(conn: asyncpg.Connection, namespace: str) -> list[tuple[str, KafkaRecord]]:
    """The service's own events in its outbox and not yet in the log (waiting for the relay, or
    parked): (topic as the consumers name it, record)."""
    rows = await conn.fetch("SELECT topic, record_key, headers, value FROM outbox WHERE published_at IS NULL "
                            "AND topic = $1 ORDER BY id", OWN.name)
    return [(namespace + row["topic"], record_of(row)) for row in rows]


async def partitions_of(settings: ServiceSettings, topics: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="tsunagu-referral-rebuild-reports",
                                **settings.kafka_options)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [d["topic"] for d in described if d["error_code"]]
    if missing:
        raise RuntimeError(f"topics not found: {', '.join(missing)}")
    return [TopicPartition(d["topic"], p["partition"]) for d in described
            for p in sorted(d["partitions"], key=lambda p: p["partition"])]


BATCH = 2000
"""Records applied in one transaction."""


def decoded(records: list[tuple[dict, Any]], done: Rebuilt) -> list[tuple[Envelope, Any]]:
    """The events of a batch of records with the projection of each; the others are counted."""
    events = []
    for projections, record in records:
        try:
            envelope = decode(record.headers or [], record.value)
        except Exception:  # noqa: BLE001 - whatever a record holds, the live consumer dead-lettered it too
            done.unreadable += 1
            continue
        projection = projections.get(type(envelope.data))
        if projection is not None:
            events.append((envelope, projection))
    return events


async def apply(conn: asyncpg.Connection, events: list[tuple[Envelope, Any]], done: Rebuilt) -> None:
    """Apply a batch of events (each partition's in its order) in one transaction."""
    if not events:
        return
    for attempt in itertools.count(1):
        try:
            applied = await apply_events(conn, events)
        except asyncpg.DeadlockDetectedError:
            # The live consumers' batches met this one's rows in another order, and PostgreSQL
            # rolled this one back: nothing of it is applied, so it is applied again.
            if attempt == DEADLOCK_ATTEMPTS:
                raise
            log.info("a batch of the rebuild met the live consumers' in a deadlock; applying it again")
            continue
        done.events += applied
        done.already += len(events) - applied
        return


DEADLOCK_ATTEMPTS = 10


async def apply_events(conn: asyncpg.Connection, events: list[tuple[Envelope, Any]]) -> int:
    async with conn.transaction():
        statements = Statements()
        applied = await project(conn, events, writes=statements)
        await statements.run(conn)
    return applied


class Statements:
    """Stands in for the connection while the projections run: their writes are gathered by
    statement and then sent once each for the whole batch, in the order each statement first came.

    Running a batch's writes grouped by statement, not in log order, gives the same rows: each write
    is an insert keyed by an id (ON CONFLICT DO NOTHING), or an upsert whose columns meet the row's
    earlier values with least() or coalesce() (adapters/reports.py), which any order gives alike; a
    statement's own rows keep their log order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {}

    async def execute(self, sql: str, *args: Any) -> None:
        self.rows.setdefault(sql, []).append(args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.rows.setdefault(sql, []).extend(rows)

    async def run(self, conn: asyncpg.Connection) -> None:
        for sql, rows in self.rows.items():
            await run_set_based(conn, sql, rows)


_PARAMETER_TYPES: dict[str, list[str]] = {}
"""The parameter types of each statement, as the database names them."""

_VALUES = re.compile(r"VALUES \((\$\d+(?:, \$\d+)*)\)")


async def run_set_based(conn: asyncpg.Connection, sql: str, rows: list[tuple]) -> None:
    """`INSERT … VALUES ($1, …)` for many rows as one `INSERT … SELECT FROM unnest(…)`: one statement
    instead of one per row. An upsert may not change a row twice in one statement (two events of one
    referral of the same kind in a batch): then, the statement's changes undone to its savepoint, the
    rows are sent one by one, in their order."""
    if len(rows) < 2 or not _VALUES.search(sql):
        await conn.executemany(sql, rows)
        return
    if sql not in _PARAMETER_TYPES:
        _PARAMETER_TYPES[sql] = [t.name for t in (await conn.prepare(sql)).get_parameters()]
    types = _PARAMETER_TYPES[sql]
    columns = ", ".join(f"${i}::{name}[]" for i, name in enumerate(types, 1))
    together = _VALUES.sub(f"SELECT * FROM unnest({columns})", sql, count=1)
    try:
        async with conn.transaction():  # a savepoint inside the batch's transaction
            await conn.execute(together, *map(list, zip(*rows)))
    except asyncpg.CardinalityViolationError:
        await conn.executemany(sql, rows)


def command(settings: ServiceSettings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tsunagu_referral rebuild-reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accept-partial", action="store_true",
                        help="rebuild even when retention has deleted the oldest records (their figures are lost)")
    args = parser.parse_args(argv)
    settle_garbage_collection()  # many short-lived objects per event: collected as a service collects them
    try:
        done = asyncio.run(rebuild(settings, accept_partial=args.accept_partial))
    except LogIncomplete as exc:
        sys.exit(f"[tsunagu] referral: nothing changed. The log no longer holds every event the reports were built "
                 f"from ({exc}); rebuilding would drop their figures. Use --accept-partial to rebuild anyway.")
    print(f"[tsunagu] referral: report read model rebuilt from {done.events} event(s); {done.already} applied by "
          f"the running service meanwhile; {done.unreadable} unreadable record(s) skipped")
