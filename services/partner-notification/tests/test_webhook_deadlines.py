"""The webhook sender against receivers that misbehave, on a real PostgreSQL database and real
loopback HTTP: one send never outlives the lease that lets it be claimed again."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import weakref
from datetime import datetime
from functools import partial
from uuid import UUID

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet

from tsunagu_contracts import ConsentGranted, Envelope, ReferralRequested, uuid7
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work, unit_of_work_on
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.handlers.fan_out import on_consent_granted, on_referral_requested
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.handlers.registry import register_partner
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])
LOOPBACK = WebhookUrlRules(allow_loopback=True)  # the test receivers listen on loopback


@pytest.fixture
async def database(migrated_database) -> str:
    """A scratch database with partner-notification's own migrations applied."""
    return await migrated_database("partner-notification")


async def a_referral_queued_for(conn: asyncpg.Connection, webhook_url: str) -> None:
    """A partner with the person's consent, and a referral to it waiting in its deliveries."""
    async with unit_of_work_on(conn, Repository) as uow:
        partner = await register_partner(uow, RegisterPartner(
            name="ざまフードバンク", need_categories=["no_food"], areas=["142166"],
            contact={"department": "相談窓口", "email": "desk@example.org"}, webhook_url=webhook_url),
            partner_id=uuid7(), cipher=CIPHER, now=MORNING, url_rules=LOOPBACK)
    partner_id, case_id = UUID(partner["partner_id"]), uuid7()
    consent = ConsentGranted(case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(),
                             person_ref=uuid7(), recipient={"kind": "partner", "partner_id": partner_id},
                             purpose="referral", method="written")
    example = ReferralRequested.model_json_schema()["examples"][0]
    referral = ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "need": "no_food", "occurred_at": MORNING.isoformat(),
        "recipient": {"kind": "partner", "partner_id": str(partner_id)}})
    for handler, event in ((on_consent_granted, consent), (on_referral_requested, referral)):
        async with conn.transaction():
            await consumed(handler)(conn, Envelope(data=event, id=uuid7(), source="/tsunagu/test"))


async def sent_until_settled(database: str, receiver: Receiver, policy: DeliveryPolicy) -> asyncpg.Record:
    """Queue one delivery for `receiver`, run the real sender until the delivery is settled (bounded),
    and give its row."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    try:
        async with ReceiverServer() as server:
            async with pool.acquire() as conn:
                await a_referral_queued_for(conn, server.add("partner", receiver))
            sender = asyncio.create_task(WebhookSender(pool, partial(unit_of_work, pool, Repository), CIPHER,
                                                       policy, url_rules=LOOPBACK).run())
            try:
                return await eventually(
                    lambda: pool.fetchrow("SELECT status, attempts, last_status, last_error FROM deliveries"),
                    until=lambda d: d["status"] not in ("pending", "sending"))
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    finally:
        await pool.close()


async def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline_and_never_sent_twice_at_once(database):
    # One byte every 0.1 s for 12 s: no read ever waits a whole second, so only a deadline on the
    # whole request ends it. The send must end, and be recorded, before its lease lets it be claimed
    # again.
    dripping = Receiver(drip=0.1, drip_for=12)
    policy = DeliveryPolicy(poll_s=0.05, timeout_s=1, lease_s=3, retry_schedule=(0.5,))  # two attempts
    delivery = await sent_until_settled(database, dripping, policy)

    assert dripping.most_open == 1, "never two attempts at once"
    assert delivery["status"] == "dead" and delivery["last_error"] == "TimeoutError", dict(delivery)
    assert len(dripping.received) == delivery["attempts"] == 2, "each attempt is one request, each claim one attempt"


async def test_only_the_start_of_an_answer_is_read_so_a_long_one_is_not_waited_for(database):
    # The status came first; what follows is the receiver's business. Past `answer_cap` bytes the
    # sender stops reading, long before this receiver would finish (60 s).
    long_answer = Receiver(drip=0.1, drip_for=60)
    policy = DeliveryPolicy(poll_s=0.05, timeout_s=5, lease_s=10, answer_cap=5)
    delivery = await sent_until_settled(database, long_answer, policy)

    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 200)
    assert len(long_answer.received) == 1


# httpx's stream wrapper and its response refer to each other (encode/httpx#3733). Left so, every
# webhook's response, request and connection bookkeeping waited for the cyclic collector, whose
# pauses grew with the rate.
async def test_a_sent_webhooks_response_is_freed_once_read_without_waiting_for_the_cyclic_collector():
    sender = WebhookSender(None, None, CIPHER, DeliveryPolicy(), url_rules=LOOPBACK)
    answers = []

    async def keep_sight_of(response):
        answers.append(weakref.ref(response))

    async with ReceiverServer() as server, sender.client() as client:
        url = server.add("partner", Receiver(body=b'{"ok": true}', content_type="application/json"))
        client.event_hooks = {"request": [], "response": [keep_sight_of]}

        gc.disable()
        try:
            status, _ = await sender.post(client, url, '{"type": "test"}', {"content-type": "application/json"})
            assert status == 200 and len(answers) == 1
            assert answers[0]() is None
        finally:
            gc.enable()
