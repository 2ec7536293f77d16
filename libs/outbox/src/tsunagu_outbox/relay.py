"""Publishes committed outbox rows to Kafka in order and marks them published."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from tsunagu_contracts import KafkaRecord
from tsunagu_outbox.store import NOTIFY_CHANNEL

log = logging.getLogger("tsunagu.outbox")

# One relay per service database keeps records of one case in commit order; the others wait.
RELAY_LOCK = 0x7473_756E_6167_75  # "tsunagu"

Publish = Callable[[str, KafkaRecord], Awaitable[None]]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Publish, *, batch_size: int = 200,
                 sweep_interval: float = 1.0, keep_published_for: float = 7 * 24 * 3600):
        self.pool = pool
        self.publish = publish
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        self.keep_published_for = keep_published_for
        self.published = 0
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Relay until cancelled; reconnects after database or broker failures."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep relaying after any outage
                log.exception("outbox relay interrupted; retrying")
                await asyncio.sleep(self.sweep_interval)

    async def _run_once(self) -> None:
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                await asyncio.sleep(self.sweep_interval)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            try:
                sweeps = 0
                while True:
                    while await self.drain(conn):
                        pass
                    sweeps += 1
                    if sweeps % 3600 == 0:
                        await self._forget_old(conn)
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.sweep_interval)
                    except TimeoutError:
                        pass
            finally:
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK)
        finally:
            await self.pool.release(conn)

    def _on_notify(self, *_args) -> None:
        self._wake.set()

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Publish one batch of unpublished rows in id order; returns how many were published."""
        rows = await conn.fetch(
            "SELECT id, topic, record_key, headers, value FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1", self.batch_size)
        done: list[int] = []
        try:
            for row in rows:
                headers = json.loads(row["headers"])
                record = KafkaRecord(key=row["record_key"].encode(), value=bytes(row["value"]),
                                     headers=[(k, v.encode()) for k, v in headers.items()])
                await self.publish(row["topic"], record)
                done.append(row["id"])
        finally:
            # Whatever reached the broker is marked even if a later row failed; a crash before this
            # line republishes them, and consumers drop the duplicates by event id.
            if done:
                await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", done)
                self.published += len(done)
        return len(done)

    async def _forget_old(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
                           self.keep_published_for)
