"""Publishes committed outbox rows to Kafka in order and marks them published.

Order is kept per lane: the rows of one topic and record key (the case id), which is all the order
Kafka itself has (one key, one partition). A row the broker will not take (a topic that does not
exist, a record too large) is tried again with backoff and parked after `max_attempts`, so one
record never stops a service's whole outbox: other lanes move on, and the rows behind it in its
own lane wait for it. A parked row is tried again every `parked_retry_s`, or at once when released
(`release_parked`, `python -m <service> replay-outbox`).

A lane's due rows go out together (up to `RelayPolicy.batch_bytes`, then the next run once that one
is acknowledged), as one record batch (`Publish`): the broker appends it whole or not at all, so a
case's records reach their partition in order with no gap, in one produce request, and its
consumers get them in one fetch. The lanes' batches are in flight together, so a drain
costs about one request per partition leader rather than one acknowledged round trip per row. When
a lane's rows fail together, the broker does not say which one is at fault: they are sent again one
by one, each after its predecessor was acknowledged, and only a row that fails alone is counted
against (and, in time, parked). A row that failed before is always sent alone.

A failure while the broker does not answer at all is an outage, not the row's fault: nothing is
counted, and the relay starts over once the broker is back. A failure the broker calls transient
(a partition without its leader or enough replicas, an answer too slow) is retried with backoff in
its lane but never parks the row: it would otherwise park every case whose partition sat on a
broker that restarted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from tsunagu_contracts import KafkaRecord
from tsunagu_outbox.store import NOTIFY_CHANNEL, record_of

log = logging.getLogger("tsunagu.outbox")

# One relay per service database keeps records of one case in commit order; the others wait.
RELAY_LOCK = 0x7473_756E_6167_75  # "tsunagu"

Publish = Callable[[str, list[KafkaRecord]], Awaitable[None]]
"""Publishes records of one topic and key together, in their order: all of them, or none (raises)."""


@dataclass(frozen=True)
class RelayPolicy:
    max_attempts: int = 5
    """Failed publishes of one row before it is parked."""
    first_retry_s: float = 2.0
    max_retry_s: float = 60.0
    parked_retry_s: float = 900.0
    """How often a parked row is tried again by itself."""
    publish_timeout_s: float = 10.0
    """A publish that takes longer failed (a topic that does not exist makes the client wait)."""
    batch_bytes: int = 256 * 1024
    """The most bytes of records (keys, values, headers) a lane sends at once, well within one produce
    request (1 MiB): a lane with more sends them in turn, each run after the previous one was
    acknowledged."""

    def backoff(self, attempts: int) -> float:
        return min(self.max_retry_s, self.first_retry_s * 2 ** (attempts - 1))


class OutboxMetrics:
    """The outbox as Prometheus sees it, in the service's own registry."""

    def __init__(self, registry: CollectorRegistry):
        self.backlog = Gauge("tsunagu_outbox_backlog", "Outbox rows waiting to be published (neither parked nor "
                             "behind a parked row of their topic and key)", registry=registry)
        self.oldest_age = Gauge("tsunagu_outbox_oldest_unpublished_age_seconds",
                                "Age of the oldest row of the backlog; 0 when it is empty", registry=registry)
        self.parked = Gauge("tsunagu_outbox_parked", "Outbox rows parked after their attempts failed",
                            registry=registry)
        self.held = Gauge("tsunagu_outbox_held_behind_parked",
                          "Outbox rows waiting behind a parked row of their topic and key", registry=registry)
        self.published = Counter("tsunagu_outbox_published", "Outbox rows published", registry=registry)
        self.failures = Counter("tsunagu_outbox_publish_failures", "Failed attempts to publish an outbox row",
                                registry=registry)


class BrokerUnavailable(Exception):
    """Publishing failed while the broker did not answer: an outage, not the row's fault."""


_DUE = """
SELECT o.id, o.event_id, o.topic, o.record_key, o.headers, o.value, o.attempts, o.parked_at
FROM outbox o
WHERE o.published_at IS NULL AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
  -- Not while an earlier row of its lane waits for a retry or is parked: order per topic and key.
  AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.topic = o.topic AND e.record_key = o.record_key
                  AND e.id < o.id AND e.published_at IS NULL AND e.next_attempt_at > now())
ORDER BY o.id
LIMIT $1
"""

_STATS = """
SELECT count(*) FILTER (WHERE parked_at IS NULL AND NOT behind) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL AND NOT behind)), 0)
           AS oldest_age,
       count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
       count(*) FILTER (WHERE parked_at IS NULL AND behind) AS held
FROM (SELECT o.parked_at, o.created_at,
             EXISTS (SELECT 1 FROM outbox p WHERE p.topic = o.topic AND p.record_key = o.record_key AND p.id < o.id
                     AND p.published_at IS NULL AND p.parked_at IS NOT NULL) AS behind
      FROM outbox o WHERE o.published_at IS NULL) unpublished
"""


def _transient(exc: BaseException) -> bool:
    """A publish too slow, or an error the Kafka client marks retriable (`retriable = True`)."""
    return isinstance(exc, TimeoutError) or bool(getattr(exc, "retriable", False))


def _describe(exc: BaseException, policy: RelayPolicy) -> str:
    """Why a publish failed, from the exception alone: never the record."""
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: no acknowledgement within {policy.publish_timeout_s:g}s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")[:300]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Publish, *, policy: RelayPolicy | None = None,
                 metrics: OutboxMetrics | None = None, broker_up: Callable[[], Awaitable[bool]] | None = None,
                 topic_exists: Callable[[str], Awaitable[bool]] | None = None, batch_size: int = 200,
                 sweep_interval: float = 1.0, keep_published_for: float = 7 * 24 * 3600):
        """`broker_up` and `topic_exists` explain a failed publish: an outage counts against no row, and a
        topic that does not exist fails the batch's other rows for it without waiting on each."""
        self.pool = pool
        self.publish = publish
        self.policy = policy or RelayPolicy()
        self.metrics = metrics
        self.broker_up = broker_up
        self.topic_exists = topic_exists
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        self.keep_published_for = keep_published_for
        self.published = 0
        self._wake = asyncio.Event()
        self.full = False
        """Whether the last drain found a whole batch due (there may be more)."""
        self._measured_at = float("-inf")

    async def run(self) -> None:
        """Relay until cancelled; reconnects after database or broker failures."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except BrokerUnavailable as exc:
                log.warning("outbox relay paused: %s", exc)
                await asyncio.sleep(self.sweep_interval)
            except Exception:  # noqa: BLE001 - keep relaying after any outage
                log.exception("outbox relay interrupted; retrying")
                await asyncio.sleep(self.sweep_interval)

    async def _run_once(self) -> None:
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                await self._measure_now_and_then(conn)  # another instance relays; this one still reports
                await asyncio.sleep(self.sweep_interval)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            # The relay's own writes (rows marked published, attempts counted) do not wait for the
            # disk: a database crash may forget the last fraction of a second of them, and then the
            # rows are published again (consumers drop duplicates by event id) or tried once more.
            # Reset with the connection when it goes back to the pool.
            await conn.execute("SET synchronous_commit TO off")
            try:
                sweeps = 0
                while True:
                    # Cleared before draining: a row committed while a drain runs wakes the next
                    # one at once, instead of waiting for the sweep.
                    self._wake.clear()
                    while await self.drain(conn) and self.full:
                        pass  # a full batch: more may be due now
                    await self._measure_now_and_then(conn)
                    sweeps += 1
                    if sweeps % 3600 == 0:
                        await self._forget_old(conn)
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.sweep_interval)
                    except TimeoutError:
                        pass
            finally:
                await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK)
        finally:
            try:
                await conn.reset()  # no session lock or LISTEN goes back to the pool, whatever failed above
            finally:
                await self.pool.release(conn)

    def _on_notify(self, *_args) -> None:
        self._wake.set()

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Publish one batch of due rows in id order; returns how many were published.

        Each lane's rows go out together, every lane's before any is awaited. A lane whose rows failed
        together sends them again one by one, each only after the previous one was acknowledged, and
        none at all once one of them failed alone."""
        rows = await conn.fetch(_DUE, self.batch_size)
        self.full = len(rows) == self.batch_size
        lanes: dict[tuple[str, str], list[asyncpg.Record]] = {}
        for row in rows:
            lanes.setdefault((row["topic"], row["record_key"]), []).append(row)
        one_by_one: set[tuple[str, str]] = set()  # lanes whose rows failed together in this batch
        done: list[int] = []
        waiting: set[tuple[str, str]] = set()  # lanes with a row that failed in this batch
        missing: set[str] = set()  # topics the broker does not have
        try:
            while sending := await self._next_sends(conn, lanes, one_by_one, waiting, missing):
                outcomes = await asyncio.gather(*(self._publish(group) for group in sending), return_exceptions=True)
                await self._settle(conn, sending, outcomes, done, lanes, one_by_one, waiting, missing)
        finally:
            # Whatever reached the broker is marked even if a later row failed; a crash before this
            # line republishes them, and consumers drop the duplicates by event id.
            if done:
                # `published_at IS NULL` lets any plan find the rows in a partial index of unpublished
                # rows, which stays as small as the backlog. The relay keeps its connection, and with
                # it the plan PostgreSQL settles on after five runs: by id alone, a plan made while
                # the outbox was nearly empty (a new database, before autovacuum first analyzed it)
                # scanned the whole table for every batch, however large it had grown.
                await conn.execute("UPDATE outbox SET published_at = now(), parked_at = NULL, next_attempt_at = NULL "
                                   "WHERE published_at IS NULL AND id = ANY($1::bigint[])", done)
                self.published += len(done)
                if self.metrics:
                    self.metrics.published.inc(len(done))
        return len(done)

    async def _next_sends(self, conn: asyncpg.Connection, lanes: dict[tuple[str, str], list[asyncpg.Record]],
                          one_by_one: set[tuple[str, str]], waiting: set[tuple[str, str]],
                          missing: set[str]) -> list[list[asyncpg.Record]]:
        """What each lane sends next, taken off its queue: its rows up to `batch_bytes`, or its first
        row alone when its rows failed together or that row failed before."""
        sending = []
        for lane, queue in lanes.items():
            if not queue or lane in waiting:
                continue
            if lane[0] in missing:
                waiting.add(lane)
                await self._failed(conn, queue[0], "UnknownTopicOrPartitionError: the topic does not exist")
                continue
            n = 1 if lane in one_by_one or queue[0]["attempts"] else self._run_length(queue)
            sending.append(queue[:n])
            del queue[:n]
        return sending

    def _run_length(self, queue: list[asyncpg.Record]) -> int:
        """How many of a lane's first rows go together: up to `batch_bytes`, at least one, and never
        a row that failed before (it goes alone)."""
        size = n = 0
        for row in queue:
            size += len(row["record_key"]) + len(row["value"]) + len(row["headers"])
            if n and (row["attempts"] or size > self.policy.batch_bytes):
                break
            n += 1
        return n

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        async with asyncio.timeout(self.policy.publish_timeout_s):
            await self.publish(rows[0]["topic"], [record_of(row) for row in rows])

    async def _settle(self, conn: asyncpg.Connection, sent: list[list[asyncpg.Record]],
                      outcomes: list[BaseException | None], done: list[int],
                      lanes: dict[tuple[str, str], list[asyncpg.Record]], one_by_one: set[tuple[str, str]],
                      waiting: set[tuple[str, str]], missing: set[str]) -> None:
        """Handle each lane's outcome. Rows the broker took go to `done` even when another lane found
        the broker down; that outage is raised after them, and no failed row is counted."""
        outage: Exception | None = None  # the failure that found the broker down
        interrupted: BaseException | None = None
        broker_answered = False  # one answer from the broker explains every failure of these sends
        for rows, outcome in zip(sent, outcomes, strict=True):
            if outcome is None:
                for row in rows:
                    done.append(row["id"])
                    if row["parked_at"] is not None or row["attempts"]:
                        log.info("outbox event %s (%s) to %s published after %d failed attempt(s)", row["event_id"],
                                 _event_type(row), row["topic"], row["attempts"])
                continue
            if not isinstance(outcome, Exception):  # cancelled: stop once the rows already sent are marked
                interrupted = interrupted or outcome
                continue
            if outage is not None or interrupted is not None:
                continue
            if self.broker_up is not None and not broker_answered:
                if not await self.broker_up():
                    outage = outcome
                    continue
                broker_answered = True
            first, lane = rows[0], (rows[0]["topic"], rows[0]["record_key"])
            if first["topic"] in missing or (self.topic_exists is not None
                                             and not await self.topic_exists(first["topic"])):
                missing.add(first["topic"])
                waiting.add(lane)
                await self._failed(conn, first, "UnknownTopicOrPartitionError: the topic does not exist")
            elif len(rows) > 1:
                lanes[lane][:0] = rows  # sent again one by one: only a row that fails alone is counted
                one_by_one.add(lane)
            else:
                waiting.add(lane)
                await self._failed(conn, first, _describe(outcome, self.policy), may_park=not _transient(outcome))
        if interrupted is not None:
            raise interrupted
        if outage is not None:
            raise BrokerUnavailable(f"the broker does not answer ({_describe(outage, self.policy)})") from outage

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, error: str, *,
                      may_park: bool = True) -> None:
        """Count a failed attempt; after the last one the row is parked and tried only now and then."""
        attempts = row["attempts"] + 1
        parks = may_park and attempts >= self.policy.max_attempts
        retry_in = self.policy.parked_retry_s if parks else self.policy.backoff(attempts)
        await conn.execute(
            "UPDATE outbox SET attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4), "
            "parked_at = CASE WHEN $5 THEN coalesce(parked_at, now()) END WHERE id = $1",
            row["id"], attempts, error, retry_in, parks)
        if self.metrics:
            self.metrics.failures.inc()
        what = (row["event_id"], _event_type(row), row["topic"])
        if parks and row["parked_at"] is None:
            log.error("outbox event %s (%s) to %s parked after %d failed attempts, the rows behind it on its topic "
                      "and key wait: %s; tried again every %gs, or release it with replay-outbox",
                      *what, attempts, error, retry_in)
        elif parks:
            log.warning("parked outbox event %s (%s) to %s failed again: %s", *what, error)
        elif may_park:
            log.warning("outbox event %s (%s) to %s failed (attempt %d of %d), retrying in %gs: %s",
                        *what, attempts, self.policy.max_attempts, retry_in, error)
        else:
            log.warning("outbox event %s (%s) to %s failed (attempt %d, transient, so never parked), retrying in "
                        "%gs: %s", *what, attempts, retry_in, error)

    async def _measure_now_and_then(self, conn: asyncpg.Connection) -> None:
        if time.monotonic() - self._measured_at >= 1.0:
            await self.measure(conn)
            self._measured_at = time.monotonic()

    async def measure(self, conn: asyncpg.Connection) -> None:
        """Refresh the outbox gauges."""
        if self.metrics is None:
            return
        stats = await conn.fetchrow(_STATS)
        self.metrics.backlog.set(stats["backlog"])
        self.metrics.oldest_age.set(float(stats["oldest_age"]))
        self.metrics.parked.set(stats["parked"])
        self.metrics.held.set(stats["held"])

    async def _forget_old(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
                           self.keep_published_for)


def _event_type(row: asyncpg.Record) -> str:
    return json.loads(row["headers"]).get("ce_type", "?")
