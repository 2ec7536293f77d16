"""Sending mail notices to partners without a webhook, through the webhook sender's loop.

A mail notice is a delivery on the `email` channel (adapters/deliveries.py): claimed under a lease
like a webhook, sent in its own task, retried on the same schedule and a dead letter (with
DeliveryFailed) when the schedule is spent, or at once when the server refuses for good (a 5xx
reply). Each claim is a single UPDATE that re-checks the row is still due, so two senders never
send one notice; a sender that dies after the server accepted the mail but before recording it
sends it again when the lease ends, with the same Message-ID.

Nothing about an SMTP failure that could name a person or a mailbox is kept or logged: the error
recorded is the exception's class and the reply code, never the server's text (which often echoes
the address) and never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiosmtplib
import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PrometheusCounter

from tsunagu_contracts.codes import DeliveryChannel
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.domain.mail import message, referral_notice
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender, _propagator

log = logging.getLogger("tsunagu.partners.mail")

SENT = 250


@dataclass(frozen=True)
class SmtpServer:
    """Where notices are sent from and through. `password` is read from a secret, never logged."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = "tsunagu@localhost"
    console_url: str = "http://127.0.0.1:8000"

    def __repr__(self) -> str:  # the password stays out of any log line or traceback that prints it
        return f"SmtpServer(host={self.host!r}, port={self.port}, starttls={self.starttls})"


class MailMetrics:
    """Each mail attempt by how it settled: `delivered`, `retrying` or `dead`."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.attempts = PrometheusCounter("tsunagu_mail_deliveries", "Mail notice attempts, by outcome",
                                          ["outcome"], registry=registry)
        self.duration = Histogram("tsunagu_mail_delivery_duration_seconds", "Time from connecting to the SMTP "
                                  "server to its last reply (or the deadline), by outcome", ["outcome"],
                                  buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=registry)

    def observe(self, outcome: str, seconds: float) -> None:
        self.attempts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)


def smtp_failure(exc: Exception) -> tuple[int | None, str, bool]:
    """The reply code, the error as recorded (class and code only) and whether it is permanent (5xx)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) and 100 <= code < 600 else None
    return code, type(exc).__name__, code is not None and 500 <= code < 600


class MailSender(WebhookSender):
    channel = DeliveryChannel.EMAIL

    def __init__(self, pool: asyncpg.Pool, new_uow: NewUnitOfWork, server: SmtpServer, policy: DeliveryPolicy,
                 metrics: MailMetrics | None = None, tracer: Tracer | None = None):
        super().__init__(pool, new_uow, cipher=None, policy=policy, tracer=tracer)
        self.server = server
        self.metrics = metrics or MailMetrics(CollectorRegistry())

    def client(self, timeout=None):
        """Each notice opens its own SMTP connection; there is no client to share."""
        return contextlib.nullcontext()

    def settle(self, status: int | None) -> str:
        return "delivered" if status == SENT else "retry"

    async def send(self, client, row: asyncpg.Record) -> None:
        """One attempt, as a CLIENT span of the case's trace (as a webhook's); no address on the span."""
        parent = _propagator.extract({"traceparent": row["traceparent"]}) if row["traceparent"] else None
        with self.tracer.start_as_current_span("mail SMTP", context=parent, kind=SpanKind.CLIENT, attributes={
                "tsunagu.delivery_id": str(row["delivery_id"]), "tsunagu.partner_id": str(row["partner_id"]),
                "tsunagu.case_id": str(row["case_id"]), "tsunagu.event_id": str(row["event_id"]),
                "tsunagu.event_type": row["event_type"], "tsunagu.attempt": row["attempts"],
                "tsunagu.channel": self.channel.value}):
            await self.attempt(client, row)

    async def attempt(self, client, row: asyncpg.Record) -> None:
        status, error, permanent = None, None, False
        try:
            started = time.perf_counter()
            try:
                mail = message(referral_notice(row["body"], self.server.console_url), sender=self.server.sender,
                               to=row["email"], delivery_id=row["delivery_id"])
            except (ValueError, TypeError, KeyError) as exc:
                # A notice that cannot be written (an address the message refuses) never will be.
                error, permanent = f"unwritable:{type(exc).__name__}", True
            else:
                try:
                    async with asyncio.timeout(self.policy.timeout_s):
                        await self.deliver(mail, row["email"])
                    status = SENT
                except TimeoutError:
                    error = "TimeoutError"
                except (aiosmtplib.SMTPException, OSError) as exc:
                    status, error, permanent = smtp_failure(exc)
            took = time.perf_counter() - started
            _reply_on_span(status, error)
            self.metrics.observe(await self.record(row, status, None, error, permanent), took)
        except Exception as exc:  # noqa: BLE001 - the lease ends and the delivery is claimed again
            # The class only: an exception's text may hold the partner's address.
            log.error("mail delivery %s could not be recorded (%s)", row["delivery_id"], type(exc).__name__)
        finally:
            self.sent(row["partner_id"])

    async def deliver(self, mail, to: str) -> None:
        """The envelope names the one registered address: recipients are never read from the headers,
        where an address such as `a,b@example.org` would count as two."""
        s = self.server
        await aiosmtplib.send(mail, sender=s.sender, recipients=[to], hostname=s.host, port=s.port,
                              username=s.username, password=s.password, start_tls=s.starttls,
                              timeout=self.policy.timeout_s)


def _reply_on_span(status: int | None, error: str | None) -> None:
    """The server's reply code on the attempt's span, or the kind of failure (never the server's text)."""
    span = trace.get_current_span()
    if status is not None:
        span.set_attribute("smtp.reply_code", status)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))


__all__ = ["MailMetrics", "MailSender", "SmtpServer", "smtp_failure"]
