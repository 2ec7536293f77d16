"""Sending queued deliveries to partners' webhooks, so that no receiver holds up the others.

Deliveries are claimed from the database with a lease (a process that dies mid-send leaves them to
be claimed again when the lease ends). Each is sent in its own task; at most `per_partner` are in
flight for one partner, so a slow or hanging receiver only ever waits on itself.

A send has one deadline for all of it (connecting, sending, the answer), shorter than the lease:
a receiver that answers a byte at a time defeats any per-read timeout, and were the send still
running when the lease ended, the delivery would be claimed and sent again alongside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from cryptography.fernet import MultiFernet
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PrometheusCounter

from tsunagu_contracts import DeliveryFailed
from tsunagu_contracts.codes import DeliveryChannel
from tsunagu_contracts.japan import japan_date
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.adapters.deliveries import DELIVERIES_CHANNEL, Deliveries
from tsunagu_partners.adapters.webhook_transport import CheckedTransport, Resolve, system_resolve
from tsunagu_partners.domain.webhooks import (
    RETRY_SCHEDULE_S, outcome, referral_asked_of, retry_after_seconds, retry_delay, signed_headers, with_details_link,
)
from tsunagu_partners.domain.webhook_urls import UrlRefused, WebhookUrlRules
from tsunagu_partners.handlers.referral_status import left_undelivered
from tsunagu_partners.handlers.registry import webhook_secret

log = logging.getLogger("tsunagu.partners.webhooks")
_propagator = TraceContextTextMapPropagator()

LEASE_MARGIN_S = 2.0
"""How much longer than a send's deadline its lease lasts at least: time to record the outcome."""


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE_S  # the wait after each failed attempt
    timeout_s: float = 10.0  # the deadline of one whole send
    lease_s: float = 30.0  # how long a claimed delivery stays this sender's
    answer_cap: int = 4096  # bytes of a receiver's answer read (and thrown away), at most
    per_partner: int = 4
    in_flight: int = 64
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        check_lease(self.timeout_s, self.lease_s)
        if not self.retry_schedule or min(self.retry_schedule) <= 0:
            raise ValueError("the retry schedule needs at least one wait, each longer than 0 s")

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


def check_lease(timeout_s: float, lease_s: float) -> None:
    if lease_s < timeout_s + LEASE_MARGIN_S:
        raise ValueError(f"the lease ({lease_s:g} s) must outlast a send's deadline ({timeout_s:g} s) by "
                         f"{LEASE_MARGIN_S:g} s or more, or a slow send is claimed and sent again while it runs")


class WebhookMetrics:
    """Each attempt by how it settled: `delivered`, `retrying` (another attempt is scheduled), `gone`
    (410: the endpoint is disabled and the delivery dead), `dead` (the schedule is spent)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.attempts = PrometheusCounter("tsunagu_webhook_deliveries", "Webhook delivery attempts, by outcome",
                                          ["outcome"], registry=registry)
        self.duration = Histogram("tsunagu_webhook_delivery_duration_seconds", "Time from sending a webhook to its "
                                  "answer (or the deadline), by outcome", ["outcome"],
                                  buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=registry)

    def observe(self, outcome: str, seconds: float) -> None:
        self.attempts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)


class WebhookSender:
    """`pool` gives the connection that listens for new deliveries; everything else is done in units
    of work from `new_uow`. It sends the deliveries of its `channel` (handlers/mail.py sends mail
    notices through the same loop, claims, retries and dead letters)."""

    channel = DeliveryChannel.WEBHOOK

    def __init__(self, pool: asyncpg.Pool, new_uow: NewUnitOfWork, cipher: MultiFernet, policy: DeliveryPolicy,
                 metrics: WebhookMetrics | None = None, tracer: Tracer | None = None,
                 url_rules: WebhookUrlRules = WebhookUrlRules(), resolve: Resolve = system_resolve,
                 public_url: str | None = None):
        """`public_url`: the service's public address, for the link to a referral's details
        (domain/webhooks.py `with_details_link`); None sends bodies as queued."""
        self.pool, self.new_uow, self.cipher, self.policy = pool, new_uow, cipher, policy
        self.url_rules, self.resolve, self.public_url = url_rules, resolve, public_url
        self.metrics = metrics or WebhookMetrics(CollectorRegistry())
        self.tracer = tracer or trace.get_tracer(__name__)
        self.in_flight: Counter = Counter()
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Send until cancelled; a database outage (even at start-up) only pauses it."""
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("webhook sender interrupted; restarting")
                await asyncio.sleep(self.policy.poll_s * 4)

    async def _run(self) -> None:
        # Per-operation timeouts, within the deadline `send` sets on the whole request.
        timeout = httpx.Timeout(self.policy.timeout_s)
        listener = await self.pool.acquire()
        wake = lambda *_: self.wake.set()  # noqa: E731
        await listener.add_listener(DELIVERIES_CHANNEL, wake)
        async with self.client(timeout) as client:
            try:
                loop = asyncio.get_running_loop()
                swept_at = float("-inf")
                while True:
                    # Cleared before the claim: a delivery queued while the claim runs wakes the
                    # next one at once.
                    self.wake.clear()
                    try:
                        if loop.time() - swept_at >= self.policy.poll_s:
                            await self.sweep()
                            swept_at = loop.time()
                        claimed, asked = await self.claim()
                    except (OSError, asyncpg.PostgresError):
                        log.exception("claiming deliveries failed; retrying")
                        claimed, asked = [], 0
                    for row in claimed:
                        self.in_flight[row["partner_id"]] += 1
                        task = asyncio.create_task(self.send(client, row))
                        self.tasks.add(task)
                        task.add_done_callback(self.tasks.discard)
                    if len(claimed) < asked or not claimed:
                        # Nothing more is due now (or the caps hold it back). Woken by a new delivery
                        # (NOTIFY) or a send that freed a capped slot; the timeout catches retries
                        # that fall due and notifications lost while disconnected.
                        try:
                            await asyncio.wait_for(self.wake.wait(), self.policy.poll_s)
                        except TimeoutError:
                            pass
            finally:
                for task in self.tasks:
                    task.cancel()
                try:
                    await listener.reset()  # pooled: no LISTEN goes back to the pool
                finally:
                    await self.pool.release(listener)

    def client(self, timeout: httpx.Timeout | None = None) -> httpx.AsyncClient:
        """The client every webhook goes through: each URL and each address it resolves to is checked
        (adapters/webhook_transport.py), redirects are not followed, and no proxy is taken from the
        environment."""
        return webhook_client(self.url_rules, self.resolve, timeout or httpx.Timeout(self.policy.timeout_s))

    async def sweep(self) -> None:
        """Due deliveries the partner may no longer see are marked 'withdrawn', and those of deactivated
        partners 'cancelled', so that they leave the queue. Done every `poll_s`, not before each claim:
        the claim itself never takes such a row (it checks both under the row's lock)."""
        today = japan_date(datetime.now(UTC))
        # One statement each, without a transaction around them: a sender never holds the rows it
        # withdrew while it claims others, where another sender doing the same could wait on it as
        # it waits on that one.
        async with self.pool.acquire() as conn:
            deliveries = Deliveries(conn)
            withdrawn = await deliveries.withdraw_due_unseen(today)
            await deliveries.cancel_due_of_inactive()
        if withdrawn:
            log.info("%s deliveries withdrawn before sending: their partner may no longer see the case", withdrawn)

    async def claim(self) -> tuple[list[asyncpg.Record], int]:
        """Due deliveries, at most `per_partner` in flight for any one partner, leased to this process,
        and how many were asked for: fewer claimed means none other is due now.

        Only deliveries the partner may still see, of partners still active (see `sweep`)."""
        room = self.policy.in_flight - sum(self.in_flight.values())
        if room <= 0:
            return [], 0
        busy = {p: n for p, n in self.in_flight.items() if n > 0}
        today = japan_date(datetime.now(UTC))
        asked = min(room, 100)
        # Claimed under a lease by one UPDATE, which is its own transaction (adapters/deliveries.py):
        # two senders never claim one delivery.
        async with self.pool.acquire() as conn:
            return await Deliveries(conn).claim(today, busy, self.policy.per_partner, asked,
                                                self.policy.lease_s, self.channel.value), asked

    async def send(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        """One attempt, as a CLIENT span of the trace of the event that queued the delivery: a retry
        hours later is still a span of the case's trace, and an outcome it records (a DeliveryFailed
        event) continues it."""
        parent = _propagator.extract({"traceparent": row["traceparent"]}) if row["traceparent"] else None
        with self.tracer.start_as_current_span("webhook POST", context=parent, kind=SpanKind.CLIENT, attributes={
                "tsunagu.delivery_id": str(row["delivery_id"]), "tsunagu.partner_id": str(row["partner_id"]),
                "tsunagu.case_id": str(row["case_id"]), "tsunagu.event_id": str(row["event_id"]),
                "tsunagu.event_type": row["event_type"], "tsunagu.attempt": row["attempts"],
                "http.request.method": "POST"}):
            await self.attempt(client, row)

    async def attempt(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        status, retry_after, error, permanent = None, None, None, False
        try:
            now = datetime.now(UTC)
            previous = row.get("previous_webhook_secret")
            body = with_details_link(row["body"], row["partner_id"], self.public_url)
            headers = signed_headers(webhook_secret(self.cipher, row["webhook_secret"]), str(row["delivery_id"]),
                                     body, now,
                                     webhook_secret(self.cipher, previous) if previous is not None else None)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    status, retry_after_header = await self.post(client, row["webhook_url"], body, headers)
                retry_after = retry_after_seconds(retry_after_header, now)
            except TimeoutError:
                error = "TimeoutError"  # the deadline passed: whatever the answer began with, it is a failure
            except UrlRefused as refused:
                error, permanent = f"url_refused:{refused.code}", True  # the reason, never the URL
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            took = time.perf_counter() - started
            _answer_on_span(status, error)
            self.metrics.observe(await self.record(row, status, retry_after, error, permanent), took)
        except Exception:  # noqa: BLE001 - the lease ends and the delivery is claimed again
            log.exception("delivery %s could not be recorded", row["delivery_id"])
        finally:
            self.sent(row["partner_id"])

    def sent(self, partner_id) -> None:
        """A send ended. A claim is limited only by the caps: the loop is woken when this send freed a
        slot that was full (the partner's, or the process's), not after every send."""
        capped = (self.in_flight[partner_id] >= self.policy.per_partner
                  or sum(self.in_flight.values()) >= self.policy.in_flight)
        self.in_flight[partner_id] -= 1
        if capped:
            self.wake.set()

    async def post(self, client: httpx.AsyncClient, url: str, body: str,
                   headers: dict[str, str]) -> tuple[int, str | None]:
        """The answer's status and `Retry-After`. Its body means nothing here: up to `answer_cap`
        bytes are read and thrown away, so nothing a receiver sends can fill memory."""
        async with client.stream("POST", url, content=body.encode(), headers=headers) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= self.policy.answer_cap:
                    break  # the rest is left unread; the connection is closed, not reused
            answer = response.status_code, response.headers.get("retry-after")
        released(response)
        return answer

    async def record(self, row: asyncpg.Record, status: int | None, retry_after: float | None,
                     error: str | None, permanent: bool = False) -> str:
        """Record how the attempt went; returns it as WebhookMetrics counts it. A `permanent` failure
        (a URL the rules refuse) is not retried: the delivery is a dead letter at once."""
        result = self.settle(status)
        if result == "delivered":
            # One UPDATE, its own transaction: the common outcome costs one round trip.
            async with self.pool.acquire() as conn:
                await Deliveries(conn).delivered(row["delivery_id"], status)
            return result
        async with self.new_uow() as uow:
            # Each outcome is recorded only while the row is still 'sending' (adapters/deliveries.py).
            deliveries = uow.repo.deliveries
            if result == "gone":
                await uow.repo.registry.disable_webhook(row["partner_id"])
            delay = None if result == "gone" or permanent else retry_delay(row["attempts"], self.policy.retry_schedule, retry_after)
            if delay is None:
                await self.dead_letter(uow, row, status, error)
                return "gone" if result == "gone" else "dead"
            await deliveries.retry_at(row["delivery_id"], datetime.now(UTC) + timedelta(seconds=delay), status, error)
            return "retrying"

    def settle(self, status: int | None) -> str:
        """What an answer's status means: `delivered`, `gone` or `retry` (domain/webhooks.py `outcome`)."""
        return outcome(status)

    async def dead_letter(self, uow, row: asyncpg.Record, status: int | None, error: str | None) -> None:
        if not await uow.repo.deliveries.dead(row["delivery_id"], status, error):
            return
        data = json.loads(row["body"])["data"]
        now, referral_id = datetime.now(UTC), referral_asked_of(row["body"], row["partner_id"])
        if referral_id is not None:
            await left_undelivered(uow, referral_id, now)
        uow.emit(DeliveryFailed(
            case_id=row["case_id"], municipality_code=data["municipality_code"], occurred_at=now,
            delivery_id=row["delivery_id"], partner_id=row["partner_id"], event_id=row["event_id"],
            channel=self.channel, attempts=row["attempts"], last_status=status,
            event_type=row["event_type"], referral_id=referral_id))
        log.warning("delivery %s to partner %s is a dead letter after %d attempt(s) (status %s, %s)",
                    row["delivery_id"], row["partner_id"], row["attempts"], status, error)


def webhook_client(url_rules: WebhookUrlRules, resolve: Resolve, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The client every webhook, real or a test, goes through: each URL and each address it resolves to
    is checked (adapters/webhook_transport.py), redirects are not followed, and no proxy is taken from
    the environment."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=CheckedTransport(url_rules, resolve),
                             trust_env=False)


def released(response: httpx.Response) -> None:
    """Let a closed response be freed at once. httpx's stream wrapper and its response refer to each
    other (encode/httpx#3733): left so, every response, its request and its connection's bookkeeping
    (about 50 objects) wait for the cyclic collector, whose pauses then grow with the rate. The
    wrapper is last needed when the response is closed."""
    if response.is_closed:
        response.stream = httpx.ByteStream(b"")


def quiet_http_client_logs() -> None:
    """httpx logs each request's URL at INFO, and httpcore each connection's host and port at DEBUG:
    a partner's webhook URL may hold its own token, and where it points is the partner's business.
    The webhook spans and the delivery log say what was sent and how it went."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _answer_on_span(status: int | None, error: str | None) -> None:
    """The receiver's answer on the attempt's span: its status code, or the kind of failure (never the body)."""
    span = trace.get_current_span()
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None or status is None or status >= 300:
        span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
