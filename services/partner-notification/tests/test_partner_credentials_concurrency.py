"""Credentials and deactivation when other work runs at the same moment, on a migrated scratch
database: two rotations, a deactivation and a webhook being sent, a deactivation and fan-outs."""

from __future__ import annotations

import asyncio
import base64
import os
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
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.handlers.fan_out import on_consent_granted, on_referral_requested
from tsunagu_partners.handlers.registry import (
    NoKafkaAccess, deactivate, partner_of_token, register_partner, rotate_api_token, rotate_webhook_secret,
    token_hash, webhook_secret,
)
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])
LOOPBACK = WebhookUrlRules(allow_loopback=True)  # the test receivers listen on loopback
DAY = 24 * 3600


@pytest.fixture
async def pool(migrated_database):
    async with asyncpg.create_pool(await migrated_database("partner-notification"), min_size=2, max_size=12) as p:
        yield p


async def a_partner(pool: asyncpg.Pool, url: str = "https://partner.example.org/hook") -> dict:
    async with pool.acquire() as conn, unit_of_work_on(conn, Repository) as uow:
        return await register_partner(uow, RegisterPartner(
            name="ざまフードバンク", need_categories=["no_food"], areas=["142166"],
            contact={"department": "相談窓口", "email": "desk@example.org"}, webhook_url=url),
            partner_id=uuid7(), cipher=CIPHER, now=MORNING, url_rules=LOOPBACK)


async def apply(pool: asyncpg.Pool, handler, event) -> None:
    """One event through the consumer's wrapper, in its own transaction, as the service applies it."""
    async with pool.acquire() as conn, conn.transaction():
        await consumed(handler)(conn, Envelope(data=event, id=uuid7(), source="/tsunagu/test"))


def consent(case_id: UUID, partner_id: UUID) -> ConsentGranted:
    return ConsentGranted(case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(),
                          person_ref=uuid7(), recipient={"kind": "partner", "partner_id": partner_id},
                          purpose="referral", method="written")


def referral(case_id: UUID, partner_id: UUID) -> ReferralRequested:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": "no_food",
        "occurred_at": MORNING.isoformat(), "recipient": {"kind": "partner", "partner_id": str(partner_id)}})


async def test_two_token_rotations_at_once_both_give_working_tokens_and_end_the_one_before_them(pool):
    partner = await a_partner(pool)
    partner_id = UUID(partner["partner_id"])

    async def rotate():
        async with unit_of_work(pool, Repository) as uow:
            return await rotate_api_token(uow, partner_id, overlap_s=DAY)

    first, second = await asyncio.gather(rotate(), rotate())

    async with unit_of_work(pool, Repository) as uow:
        assert await partner_of_token(uow, first["api_token"]) == partner_id
        assert await partner_of_token(uow, second["api_token"]) == partner_id
        assert await partner_of_token(uow, partner["api_token"]) is None, "rotating twice ends the oldest at once"
    row = await pool.fetchrow("SELECT api_token_hash, previous_api_token_hash FROM partners")
    assert {bytes(row["api_token_hash"]), bytes(row["previous_api_token_hash"])} == {
        token_hash(first["api_token"]), token_hash(second["api_token"])}


async def test_two_secret_rotations_at_once_leave_both_new_secrets_signing(pool):
    partner_id = UUID((await a_partner(pool))["partner_id"])

    async def rotate():
        async with unit_of_work(pool, Repository) as uow:
            return await rotate_webhook_secret(uow, partner_id, cipher=CIPHER, overlap_s=DAY)

    first, second = await asyncio.gather(rotate(), rotate())

    row = await pool.fetchrow("SELECT webhook_secret, previous_webhook_secret FROM partners")
    assert {webhook_secret(CIPHER, row["webhook_secret"]), webhook_secret(CIPHER, row["previous_webhook_secret"])} == {
        first["webhook_secret"], second["webhook_secret"]}


async def test_a_deactivation_during_a_send_answers_once_the_send_is_over_and_nothing_is_left_to_send(pool):
    # The receiver holds the request a moment and then fails it, so the sender would try again.
    async with ReceiverServer() as server:
        receiver = Receiver(answers=[500], hang=1.0)
        partner_id = UUID((await a_partner(pool, server.add("partner", receiver)))["partner_id"])
        case_id = uuid7()
        await apply(pool, on_consent_granted, consent(case_id, partner_id))
        await apply(pool, on_referral_requested, referral(case_id, partner_id))
        sender = asyncio.create_task(WebhookSender(
            pool, partial(unit_of_work, pool, Repository), CIPHER,
            DeliveryPolicy(poll_s=0.05, timeout_s=5, lease_s=8, retry_schedule=(0.1, 0.1, 0.1)),
            url_rules=LOOPBACK).run())
        try:
            await eventually(lambda: asyncio.sleep(0, receiver.open), until=bool)  # a request is under way

            await deactivate(partial(unit_of_work, pool, Repository), partner_id, kafka_access=NoKafkaAccess(),
                             lease_s=8, poll_s=0.05)

            assert receiver.open == 0, "no request to the partner is under way once it is deactivated"
            sent = len(receiver.received)
            statuses = [r["status"] for r in await pool.fetch("SELECT status FROM deliveries")]
            assert statuses == ["cancelled"], "what the failed send left to retry was cancelled, and kept"
            async with unit_of_work(pool, Repository) as uow:
                assert await uow.repo.deliveries.claim(MORNING.date(), {}, 4, 10, 8) == []
            assert len(receiver.received) == sent
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def test_a_deactivation_waits_for_a_fan_out_under_way_and_then_cancels_what_it_queued(pool):
    partner_id = UUID((await a_partner(pool))["partner_id"])
    case_id = uuid7()
    await apply(pool, on_consent_granted, consent(case_id, partner_id))

    async with pool.acquire() as conn:
        async with conn.transaction():  # the fan-out has queued its delivery and not yet committed
            await consumed(on_referral_requested)(conn, Envelope(data=referral(case_id, partner_id), id=uuid7(),
                                                                 source="/tsunagu/test"))
            deactivation = asyncio.create_task(deactivate(partial(unit_of_work, pool, Repository), partner_id,
                                                          kafka_access=NoKafkaAccess(), lease_s=1))
            await eventually(lambda: waiting_on_a_lock(pool, deactivation), until=bool)
        await deactivation

    assert [r["status"] for r in await pool.fetch("SELECT status FROM deliveries")] == ["cancelled"]


async def waiting_on_a_lock(pool: asyncpg.Pool, task: asyncio.Task) -> bool:
    """Whether `task` has finished or another session waits on a lock (the deactivation's UPDATE)."""
    return task.done() or bool(await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))


async def test_a_deactivation_racing_fan_outs_leaves_no_delivery_to_send(pool):
    partner_id = UUID((await a_partner(pool))["partner_id"])
    cases = [uuid7() for _ in range(12)]
    for case_id in cases:
        await apply(pool, on_consent_granted, consent(case_id, partner_id))

    await asyncio.gather(
        *(apply(pool, on_referral_requested, referral(case_id, partner_id)) for case_id in cases[:6]),
        deactivate(partial(unit_of_work, pool, Repository), partner_id, kafka_access=NoKafkaAccess(), lease_s=1),
        *(apply(pool, on_referral_requested, referral(case_id, partner_id)) for case_id in cases[6:]))

    statuses = {r["status"] for r in await pool.fetch("SELECT status FROM deliveries")}
    assert statuses <= {"cancelled"}, statuses
    assert await pool.fetchval("SELECT count(*) FROM held_events") == 0
