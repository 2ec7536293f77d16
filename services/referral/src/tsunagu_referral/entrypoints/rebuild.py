"""`python -m tsunagu_referral rebuild-reports`: empty the report read model and fill it again from
the log, from the earliest offset of every partition it reads up to where the log ended at the start.

The service may keep running: its `referral-reports` consumers and the rebuild apply each event
once between them (adapters/reports.py says how), and events after the rebuild's end are the live
consumers'. The group's committed offsets are left as they are.

A rebuild is complete only while the log still holds every event: the topics keep records for their
`retention_ms` (30 days in the registry). When a partition no longer starts at offset 0, the broker
has deleted its oldest records, and the read model would lose the figures they made. The command
then changes nothing and says so, unless `--accept-partial` says to rebuild from what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tsunagu_contracts import decode
from tsunagu_referral.adapters.reports import ReportsStore
from tsunagu_referral.handlers.reports import PROJECTIONS, projecting
from tsunagu_servicehost import ServiceSettings

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
    try:
        partitions = await partitions_of(settings, list(by_name))
        starts, ends = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
        cut = sorted(f"{tp.topic}[{tp.partition}] from offset {offset}" for tp, offset in starts.items() if offset)
        if cut and not accept_partial:
            raise LogIncomplete("; ".join(cut))
        for line in cut:
            log.warning("rebuilding without the records retention deleted: %s", line)

        async with conn.transaction():
            await ReportsStore(conn).reset()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        await apply(conn, by_name[tp.topic], record, done)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await conn.close()
        await consumer.stop()
    return done


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


async def apply(conn: asyncpg.Connection, projections: dict, record, done: Rebuilt) -> None:
    try:
        envelope = decode(record.headers or [], record.value)
    except Exception:  # noqa: BLE001 - whatever a record holds, the live consumer dead-lettered it too
        done.unreadable += 1
        return
    projection = projections.get(type(envelope.data))
    if projection is None:
        return
    # One transaction per event, as the live consumer's: each holds one event's rows at a time, so
    # the two applying side by side never wait on each other in a circle.
    async with conn.transaction():
        if not await ReportsStore(conn).mark_applied(envelope.id):
            done.already += 1
            return
        await projecting(projection)(conn, envelope)
    done.events += 1


def command(settings: ServiceSettings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tsunagu_referral rebuild-reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accept-partial", action="store_true",
                        help="rebuild even when retention has deleted the oldest records (their figures are lost)")
    args = parser.parse_args(argv)
    try:
        done = asyncio.run(rebuild(settings, accept_partial=args.accept_partial))
    except LogIncomplete as exc:
        sys.exit(f"[tsunagu] referral: nothing changed. The log no longer holds every event the reports were built "
                 f"from ({exc}); rebuilding would drop their figures. Use --accept-partial to rebuild anyway.")
    print(f"[tsunagu] referral: report read model rebuilt from {done.events} event(s); {done.already} applied by "
          f"the running service meanwhile; {done.unreadable} unreadable record(s) skipped")
