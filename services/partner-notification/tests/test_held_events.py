"""Held referrals, consent validity and the sender's last look, on a real PostgreSQL database.

The handlers run as the consumers run them: each in its own transaction on its own connection.
Where two consumers race, the test interleaves them on purpose (one transaction left open while
the other starts) instead of hoping the timing comes out badly.
"""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import date, datetime, timedelta
from functools import partial
from uuid import UUID

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet
from prometheus_client import CollectorRegistry

from tsunagu_contracts import (
    ConsentGranted, ConsentWithdrawn, Envelope, EstateClearanceRequested, ReferralRequested, StatutoryBasisRecorded,
    uuid7,
)
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work, unit_of_work_on
from tsunagu_partners.adapters.held_events import HeldEvents
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_partners.handlers.fan_out import (
    deliver, fan_out, on_basis_recorded, on_consent_granted, on_consent_withdrawn, on_referral_requested,
)
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.handlers.registry import register_partner
from tsunagu_partners.handlers.sweep import HeldSweeper
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
REQUESTED = "tsunagu.referral.requested.v1"
WITHDRAWN = "tsunagu.intake.consent-withdrawn.v1"
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])
LOOPBACK = WebhookUrlRules(allow_loopback=True)  # the test receivers listen on loopback


@pytest.fixture
async def database(migrated_database) -> str:
    """A scratch database with partner-notification's own migrations applied."""
    return await migrated_database("partner-notification")


async def a_partner(conn: asyncpg.Connection, webhook_url: str = "http://127.0.0.1:9/unused") -> dict:
    async with unit_of_work_on(conn, Repository) as uow:
        return await register_partner(uow, RegisterPartner(
            name="ざまフードバンク", need_categories=["no_food"], areas=["142166"],
            contact={"department": "相談窓口", "email": "desk@example.org"}, webhook_url=webhook_url),
            partner_id=uuid7(), cipher=CIPHER, now=MORNING, url_rules=LOOPBACK)


def referral(case_id: UUID, partner_id, at: datetime = MORNING) -> Envelope[ReferralRequested]:
    example = ReferralRequested.model_json_schema()["examples"][0]
    event = ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": "no_food",
        "occurred_at": at.isoformat(), "recipient": {"kind": "partner", "partner_id": str(partner_id)}})
    return Envelope(data=event, id=uuid7(), source="/tsunagu/referral")


def consent(case_id: UUID, partner_id, *, valid_until: date | None = None, at: datetime = MORNING,
            purpose: str = "referral") -> Envelope[ConsentGranted]:
    return Envelope(data=ConsentGranted(
        case_id=case_id, municipality_code="142166", occurred_at=at, consent_id=uuid7(), person_ref=uuid7(),
        recipient={"kind": "partner", "partner_id": partner_id}, purpose=purpose, method="written",
        valid_until=valid_until), id=uuid7(), source="/tsunagu/intake")


def basis(case_id: UUID, partner_id) -> Envelope[StatutoryBasisRecorded]:
    return Envelope(data=StatutoryBasisRecorded(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, basis_id=uuid7(), person_ref=uuid7(),
        basis="support_conference_sra_9", recipient={"kind": "partner", "partner_id": partner_id},
        purpose="referral", decided_on=MORNING.date()), id=uuid7(), source="/tsunagu/intake")


def withdrawal(granted: Envelope[ConsentGranted], at: datetime) -> Envelope[ConsentWithdrawn]:
    g = granted.data
    return Envelope(data=ConsentWithdrawn(
        case_id=g.case_id, municipality_code="142166", occurred_at=at, consent_id=g.consent_id,
        person_ref=g.person_ref, recipient=g.recipient, purpose=g.purpose), id=uuid7(), source="/tsunagu/intake")


async def in_transaction(conn: asyncpg.Connection, handler, envelope) -> None:
    """As its consumer runs it: in a transaction of its own."""
    async with conn.transaction():
        await consumed(handler)(conn, envelope)


async def blocked_or_done(task: asyncio.Task, conn: asyncpg.Connection, watcher: asyncpg.Connection) -> None:
    """Wait until the second transaction has either finished its work or is waiting for a lock."""
    pid = conn.get_server_pid()
    for _ in range(1000):
        if task.done():
            return
        if await watcher.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second transaction neither finished nor waited for a lock")


async def interleaved(first: tuple, second: tuple, watcher: asyncpg.Connection) -> None:
    """First runs its handler and stays open; second starts; first commits; then second commits."""
    (conn_1, handler_1, envelope_1), (conn_2, handler_2, envelope_2) = first, second
    tx_1, tx_2 = conn_1.transaction(), conn_2.transaction()
    await tx_1.start()
    await consumed(handler_1)(conn_1, envelope_1)
    await tx_2.start()
    task = asyncio.create_task(consumed(handler_2)(conn_2, envelope_2))
    await blocked_or_done(task, conn_2, watcher)
    await tx_1.commit()
    await task
    await tx_2.commit()


async def test_a_referral_racing_its_consent_is_never_left_held(database):
    referrals, grants, watcher = [await asyncpg.connect(database) for _ in range(3)]
    try:
        partner = UUID((await a_partner(watcher))["partner_id"])
        cases = [uuid7() for _ in range(24)]
        for i, case_id in enumerate(cases):
            grant = (on_consent_granted, consent(case_id, partner)) if i % 4 < 2 else \
                (on_basis_recorded, basis(case_id, partner))
            referral_side = (referrals, on_referral_requested, referral(case_id, partner))
            grant_side = (grants, *grant)
            if i % 2 == 0:  # the referral is held first, the permission arrives while it is uncommitted
                await interleaved(referral_side, grant_side, watcher)
            else:  # the permission is written first, the referral reads while it is uncommitted
                await interleaved(grant_side, referral_side, watcher)

        held = await watcher.fetchval("SELECT count(*) FROM held_events")
        delivered = await watcher.fetch("SELECT case_id FROM deliveries WHERE event_type = $1", REQUESTED)
    finally:
        for conn in (referrals, grants, watcher):
            await conn.close()

    assert held == 0, f"{held} of {len(cases)} referrals stayed held"
    assert sorted(r["case_id"] for r in delivered) == sorted(cases), "every referral is queued for the partner"


async def test_the_sweep_releases_held_events_whose_permission_exists_and_only_those(database):
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    registry = CollectorRegistry()
    try:
        async with pool.acquire() as conn:
            partner = UUID((await a_partner(conn))["partner_id"])
            allowed, expired, without = uuid7(), uuid7(), uuid7()
            for case_id in (allowed, expired, without):
                await in_transaction(conn, on_referral_requested, referral(case_id, partner))
            # Permissions that arrived without releasing what was held (the sweep's reason to be).
            for case_id, valid_until in ((allowed, None), (expired, MORNING.date())):
                await conn.execute(
                    "INSERT INTO permissions (grant_id, case_id, partner_id, person_ref, basis, purpose, valid_until) "
                    "VALUES ($1, $2, $3, $4, 'consent', 'referral', $5)", uuid7(), case_id, partner, uuid7(),
                    valid_until)

        released = await HeldSweeper(partial(unit_of_work, pool, Repository), registry).sweep(today=MORNING.date() + timedelta(days=2))

        async with pool.acquire() as conn:
            held = {r["case_id"] for r in await conn.fetch("SELECT case_id FROM held_events")}
            queued = [r["case_id"] for r in await conn.fetch("SELECT case_id FROM deliveries WHERE event_type = $1",
                                                             REQUESTED)]
    finally:
        await pool.close()

    assert released == 1
    assert queued == [allowed], "the released referral is queued for the partner"
    assert held == {expired, without}, "with no permission valid today it stays held"
    assert registry.get_sample_value("tsunagu_partners_held_events") == 2
    assert registry.get_sample_value("tsunagu_partners_held_events_released_total") == 1


async def test_an_estate_clearance_is_held_until_the_consent_given_for_it_not_one_for_another_purpose(database):
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            partner = UUID((await a_partner(conn))["partner_id"])
            case_id = uuid7()
            await in_transaction(conn, on_consent_granted, consent(case_id, partner, purpose="housing_support"))
            example = EstateClearanceRequested.model_json_schema()["examples"][0]
            clearance = Envelope(data=EstateClearanceRequested.model_validate({
                **example, "case_id": str(case_id), "partner_id": str(partner), "occurred_at": MORNING.isoformat()}),
                id=uuid7(), source="/tsunagu/housing-support")
            await in_transaction(conn, fan_out, clearance)
            held_at = await conn.fetchval("SELECT held_at FROM held_events")
            swept_under_other_purpose = await HeldSweeper(partial(unit_of_work, pool, Repository),
                                                          CollectorRegistry()).sweep(today=MORNING.date())
            held_before, still_held_at = await conn.fetchrow("SELECT count(*), max(held_at) FROM held_events")
            await in_transaction(conn, on_consent_granted, consent(case_id, partner, purpose="estate_clearance"))
            queued = await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_type = $1",
                                         EstateClearanceRequested.type)
            held_after = await conn.fetchval("SELECT count(*) FROM held_events")
    finally:
        await pool.close()

    assert (held_before, swept_under_other_purpose) == (1, 0), "a consent to find a home is not one to clear it"
    assert still_held_at == held_at, "the sweep leaves it alone rather than releasing it only to hold it again"
    assert (queued, held_after) == (1, 0)


async def test_withdrawing_the_last_valid_consent_withdraws_pending_deliveries_despite_an_expired_one(database):
    conn = await asyncpg.connect(database)
    try:
        partner = UUID((await a_partner(conn))["partner_id"])
        case_id = uuid7()
        expired = consent(case_id, partner, valid_until=date(2026, 11, 1), at=MORNING - timedelta(days=60))
        current = consent(case_id, partner, valid_until=date(2027, 11, 26))
        for granted in (expired, current):
            await in_transaction(conn, on_consent_granted, granted)
        await in_transaction(conn, on_referral_requested, referral(case_id, partner))
        queued = await conn.fetchval("SELECT status FROM deliveries WHERE event_type = $1", REQUESTED)

        await in_transaction(conn, on_consent_withdrawn, withdrawal(current, MORNING + timedelta(hours=1)))
        after = dict(await conn.fetch("SELECT event_type, status FROM deliveries"))
    finally:
        await conn.close()

    assert queued == "pending"
    assert after[REQUESTED] == "withdrawn", "the expired consent no longer lets the partner see the case"
    assert after[WITHDRAWN] == "pending", "the partner is still told of the withdrawal"


@pytest.mark.parametrize("lost_by", ["revoked", "expired"])
async def test_the_sender_does_not_send_what_the_partner_may_no_longer_see(database, lost_by):
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    async with ReceiverServer() as server:
        receiver = Receiver()
        try:
            async with pool.acquire() as conn:
                partner = await a_partner(conn, server.add("partner", receiver))
                partner_id, case_id = UUID(partner["partner_id"]), uuid7()
                granted = consent(case_id, partner_id, valid_until=date(2099, 1, 1))
                await in_transaction(conn, on_consent_granted, granted)
                await in_transaction(conn, on_referral_requested, referral(case_id, partner_id))
                # The permission ends without reaching the queued delivery: a withdrawal that missed
                # it, or a consent that runs out while the delivery waits for its retry.
                await conn.execute("UPDATE permissions SET revoked_at = now() WHERE $1" if lost_by == "revoked"
                                   else "UPDATE permissions SET valid_until = current_date - 7 WHERE $1", True)
                # A withdrawal notice, always sent: once it arrives, the sender has looked at both.
                row = await conn.fetchrow("SELECT partner_id, webhook_url, kafka_topic FROM partners")
                async with unit_of_work_on(conn, Repository) as uow:
                    await deliver(uow, row, withdrawal(granted, datetime.now(JST)))

            sender = WebhookSender(pool, partial(unit_of_work, pool, Repository), CIPHER,
                                   DeliveryPolicy(poll_s=0.05, timeout_s=5), url_rules=LOOPBACK)
            running = asyncio.create_task(sender.run())
            try:
                await eventually(lambda: asyncio.sleep(0, receiver.of_type(WITHDRAWN)), until=bool)
                states = await eventually(lambda: pool.fetch("SELECT event_type, status FROM deliveries"),
                                          until=lambda rows: all(r["status"] not in ("pending", "sending")
                                                                 for r in rows))
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        finally:
            await pool.close()

    assert [r.event["type"] for r in receiver.received] == [WITHDRAWN], "only the withdrawal notice is sent"
    assert dict(states) == {REQUESTED: "withdrawn", WITHDRAWN: "delivered"}


@pytest.mark.parametrize("first", ["all of the batch's case locks first", "each case's lock as its event comes"])
async def test_two_batches_with_the_same_cases_in_opposite_orders_never_wait_on_each_other_in_a_circle(
        scratch_database, first):
    """Two consumers' batches (intake's topic, referral's) holding events of the same two cases in
    opposite orders: taken first in one order their locks queue; taken as each event comes, they
    can close a circle, which PostgreSQL breaks by failing one batch (the control)."""
    a, b = uuid7(), uuid7()
    both_hold_one = asyncio.Barrier(2)

    async def batch(cases: list[UUID]) -> None:
        conn = await asyncpg.connect(scratch_database)
        try:
            async with conn.transaction():
                held = HeldEvents(conn)
                if first == "all of the batch's case locks first":
                    await held.lock_cases(cases)
                for n, case in enumerate(cases):
                    await held.lock_case(case)
                    if n == 0 and first != "all of the batch's case locks first":
                        await both_hold_one.wait()
        finally:
            await conn.close()

    outcomes = await asyncio.gather(batch([a, b]), batch([b, a]), return_exceptions=True)
    if first == "all of the batch's case locks first":
        assert outcomes == [None, None]
    else:
        assert any(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes)


async def test_a_transaction_asks_for_a_case_lock_once_however_many_of_its_events_take_it(database):
    case, other = uuid7(), uuid7()
    conn = await asyncpg.connect(database)
    asked: list[str] = []
    conn.add_query_logger(lambda logged: asked.append(logged.query) if "advisory_xact_lock" in logged.query else None)
    try:
        async with unit_of_work_on(conn, Repository) as uow:  # as a consumer's batch: one transaction
            await uow.repo.held.lock_cases([case, other])
            await uow.repo.held.lock_case(case)
            await uow.repo.held.lock_case(other)
            assert await uow.repo.held.try_lock_case(case)
            await asyncio.sleep(0)  # the query logger is called soon after each statement
            assert len(asked) == 1, "the batch's locks were asked for once, first"
            assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                       "AND pid = pg_backend_pid()") == 2, "and both are held"
        async with unit_of_work_on(conn, Repository) as uow:
            await uow.repo.held.lock_case(case)
            await uow.repo.held.lock_case(case)
            await asyncio.sleep(0)
            assert len(asked) == 2, "the next transaction asks again, once"
    finally:
        await conn.close()
