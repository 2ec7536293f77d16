"""Mail notices to partners without a webhook, on a real PostgreSQL database and a real SMTP sink:
queued with the fan-out, sent once, retried when the server says "later", a dead letter when it
says "never"."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from functools import partial
from uuid import UUID

import asyncpg
import pytest

from tsunagu_contracts import ConsentGranted, Envelope, ReferralRequested, uuid7
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work, unit_of_work_on
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.handlers.fan_out import on_consent_granted, on_referral_requested
from tsunagu_partners.handlers.mail import MailSender, SmtpServer
from tsunagu_partners.handlers.registry import register_partner
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_teststack.mailsink import MailSink
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
DESK = "desk@foodbank.example"
QUICK = DeliveryPolicy(retry_schedule=(0.1, 0.1), timeout_s=5.0, lease_s=10.0, poll_s=0.1)


@pytest.fixture
async def pool(migrated_database):
    pool = await asyncpg.create_pool(await migrated_database("partner-notification"), min_size=1, max_size=8)
    yield pool
    await pool.close()


async def a_partner_without_a_webhook(conn: asyncpg.Connection) -> UUID:
    async with unit_of_work_on(conn, Repository) as uow:
        partner = await register_partner(uow, RegisterPartner(
            name="ざまこども食堂", need_categories=["no_food"], areas=["142166"],
            contact={"department": "事務局", "email": DESK}), partner_id=uuid7(), cipher=None, now=MORNING)
    return UUID(partner["partner_id"])


async def referred(conn: asyncpg.Connection, partner_id: UUID, *, times: int = 1) -> str:
    """A case with the person's consent for the partner, and a referral to it requested `times` times
    (each a separate event, as a repeated request would be); the referral's id."""
    case_id = uuid7()
    consent = ConsentGranted(case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(),
                             person_ref=uuid7(), recipient={"kind": "partner", "partner_id": partner_id},
                             purpose="referral", method="written")
    example = ReferralRequested.model_json_schema()["examples"][0]
    referral = ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": "no_food",
        "occurred_at": MORNING.isoformat(), "recipient": {"kind": "partner", "partner_id": str(partner_id)}})
    events = [(on_consent_granted, consent)] + [(on_referral_requested, referral)] * times
    for handler, event in events:
        async with conn.transaction():
            await consumed(handler)(conn, Envelope(data=event, id=uuid7(), source="/tsunagu/test"))
    return str(referral.referral_id)


async def settled(pool: asyncpg.Pool, sink: MailSink, senders: int = 1) -> list[asyncpg.Record]:
    """Run `senders` mail senders (and a webhook sender beside them) until no mail is pending."""
    server = SmtpServer(host=sink.host, port=sink.port, starttls=False, sender="tsunagu@city.example",
                        console_url="http://console.example")
    new_uow = partial(unit_of_work, pool, Repository)
    tasks = [asyncio.create_task(MailSender(pool, new_uow, server, QUICK).run()) for _ in range(senders)]
    tasks.append(asyncio.create_task(WebhookSender(pool, new_uow, None, QUICK).run()))
    try:
        return await eventually(
            lambda: pool.fetch("SELECT channel, status, attempts, last_status, last_error, referral_id "
                               "FROM deliveries"),
            until=lambda rows: rows and all(r["status"] not in ("pending", "sending") for r in rows))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_referral_requested_twice_and_two_senders_racing_still_send_one_mail(pool):
    async with pool.acquire() as conn:
        partner_id = await a_partner_without_a_webhook(conn)
        referral_id = await referred(conn, partner_id, times=2)
    async with MailSink() as sink:
        rows = await settled(pool, sink, senders=2)
        assert [(r["channel"], r["status"], r["attempts"]) for r in rows] == [("email", "delivered", 1)]
        assert len(sink.to(DESK)) == 1
        mail = sink.mails[0]
        assert f"http://console.example/partner/referrals/{referral_id}" in mail.body
        assert "食べるものがない" in mail.subject and "食べるものがない" in mail.body
        assert "受理の期限: 2026年12月2日（水）17:00（日本時間）" in mail.body


async def test_a_server_that_says_try_later_gets_the_mail_on_the_next_attempt(pool):
    async with pool.acquire() as conn:
        await referred(conn, await a_partner_without_a_webhook(conn))
    async with MailSink() as sink:
        sink.refuse(451)
        rows = await settled(pool, sink)
        assert [(r["status"], r["attempts"], r["last_status"]) for r in rows] == [("delivered", 2, 250)]
        assert sink.refused == 1 and len(sink.to(DESK)) == 1


async def test_a_server_that_refuses_for_good_makes_the_mail_a_dead_letter_at_once(pool, caplog):
    caplog.set_level(logging.DEBUG, logger="tsunagu")
    async with pool.acquire() as conn:
        partner_id = await a_partner_without_a_webhook(conn)
        referral_id = await referred(conn, partner_id)
    async with MailSink() as sink:
        sink.refuse(550, times=5)
        rows = await settled(pool, sink)
        assert [(r["status"], r["attempts"], r["last_status"], r["last_error"]) for r in rows] == [
            ("dead", 1, 550, "SMTPDataError")]
        assert sink.mails == []
    emitted = [json.loads(r["value"]) for r in await pool.fetch("SELECT value FROM outbox")]
    failed = [e for e in emitted if "delivery_id" in e]
    assert [(e["channel"], e["referral_id"], e["last_status"]) for e in failed] == [("email", referral_id, 550)]
    said = [r.getMessage() for r in caplog.records if r.name.startswith("tsunagu")]
    assert any("dead letter" in line for line in said) and not any(DESK in line for line in said)

