"""What a partner may act on and receive: closed cases, consent purposes, the items each purpose needs.

The handlers run on a migrated scratch database, each event in its own transaction as the
consumers run them.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime
from functools import partial
from uuid import UUID

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet

from prometheus_client import CollectorRegistry

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ConsentGranted, ConsentWithdrawn, Envelope, ReferralAccepted, ReferralRequested,
    StatutoryBasisEnded, StatutoryBasisRecorded, uuid7,
)
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work, unit_of_work_on
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_servicehost.errors import Rejected
from tsunagu_servicehost.errors import Refused
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.handlers.access import check_referral
from tsunagu_partners.handlers.details import provide
from tsunagu_partners.handlers.fan_out import (
    fan_out, on_basis_ended, on_basis_recorded, on_case_closed, on_case_reopened, on_consent_granted, on_consent_withdrawn,
    on_referral_requested,
)
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.handlers.registry import register_partner
from tsunagu_partners.handlers.sweep import HeldSweeper

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
REQUESTED, ACCEPTED = ReferralRequested.type, ReferralAccepted.type
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])
LOOPBACK = WebhookUrlRules(allow_loopback=True)  # the test receivers listen on loopback


@pytest.fixture
async def database(migrated_database) -> str:
    return await migrated_database("partner-notification")


@pytest.fixture
async def conn(database):
    """A connection to a scratch database with partner-notification's own migrations applied."""
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


@pytest.fixture
async def pool(database):
    """The service's pool, as the HTTP routes use it."""
    async with asyncpg.create_pool(database, min_size=1, max_size=2) as created:
        yield created


async def a_partner(conn: asyncpg.Connection) -> UUID:
    async with unit_of_work_on(conn, Repository) as uow:
        created = await register_partner(uow, RegisterPartner(
            name="居住支援法人 すまいる", need_categories=["housing", "no_food", "job_search", "work_trouble"],
            areas=["142166"], contact={"department": "相談窓口", "email": "desk@example.org"},
            webhook_url="http://127.0.0.1:9/unused"), partner_id=uuid7(), cipher=CIPHER, now=MORNING,
            url_rules=LOOPBACK)
    return UUID(created["partner_id"])


async def grant_for(conn: asyncpg.Connection, case_id: UUID, partner: UUID, grant: str) -> None:
    """A consent for a purpose, or "statutory basis for <purpose>"."""
    if grant.startswith("statutory"):
        await handle(conn, on_basis_recorded, basis(case_id, partner, grant.rsplit(" ", 1)[-1]))
    else:
        await handle(conn, on_consent_granted, consent(case_id, partner, grant))


async def handle(conn: asyncpg.Connection, handler, envelope: Envelope) -> None:
    """As its consumer runs it: in a transaction of its own."""
    async with conn.transaction():
        await consumed(handler)(conn, envelope)


def referral(case_id: UUID, partner_id: UUID, need: str = "no_food") -> Envelope[ReferralRequested]:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return Envelope(data=ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": need,
        "occurred_at": MORNING.isoformat(), "recipient": {"kind": "partner", "partner_id": str(partner_id)}}),
        id=uuid7(), source="/tsunagu/referral")


def consent(case_id: UUID, partner_id: UUID, purpose: str = "referral") -> Envelope[ConsentGranted]:
    return Envelope(data=ConsentGranted(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(), person_ref=uuid7(),
        recipient={"kind": "partner", "partner_id": partner_id}, purpose=purpose, method="written"),
        id=uuid7(), source="/tsunagu/intake")


def basis(case_id: UUID, partner_id: UUID, purpose: str) -> Envelope[StatutoryBasisRecorded]:
    return Envelope(data=StatutoryBasisRecorded(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, basis_id=uuid7(), person_ref=uuid7(),
        basis="support_conference_sra_9", recipient={"kind": "partner", "partner_id": partner_id},
        purpose=purpose, decided_on=MORNING.date()), id=uuid7(), source="/tsunagu/intake")


def case_event(event_type, case_id: UUID, **data) -> Envelope:
    return Envelope(data=event_type(case_id=case_id, municipality_code="142166", occurred_at=MORNING, **data),
                    id=uuid7(), source="/tsunagu/referral")


async def may_act(conn: asyncpg.Connection, partner_id: UUID, referral_id: UUID) -> int:
    """200 when the partner may act on the referral, else the status it is refused with."""
    try:
        async with unit_of_work_on(conn, Repository) as uow:
            await check_referral(uow.repo.access, partner_id, referral_id, today=MORNING.date(),
                                 refused_ja="同意がありません。", refused_en="no consent")
    except Rejected as rejected:
        return Refused.of(rejected).status
    return 200


async def test_closing_a_case_closes_its_active_referrals_and_reopening_gives_them_back(conn):
    partner, case_id = await a_partner(conn), uuid7()
    await handle(conn, on_consent_granted, consent(case_id, partner))
    accepted, declined = referral(case_id, partner), referral(case_id, partner, need="housing")
    for requested in (accepted, declined):
        await handle(conn, on_referral_requested, requested)
    await conn.execute("UPDATE partner_referrals SET status = 'accepted' WHERE referral_id = $1",
                       accepted.data.referral_id)
    await conn.execute("UPDATE partner_referrals SET status = 'declined' WHERE referral_id = $1",
                       declined.data.referral_id)

    await handle(conn, on_case_closed, case_event(CaseClosed, case_id, reason="resolved"))
    closed = dict(await conn.fetch("SELECT referral_id, status FROM partner_referrals"))
    while_closed = await may_act(conn, partner, accepted.data.referral_id)
    await handle(conn, on_case_reopened, case_event(CaseReopened, case_id, consultation_id=uuid7()))
    reopened = dict(await conn.fetch("SELECT referral_id, status FROM partner_referrals"))

    assert closed == {accepted.data.referral_id: "closed", declined.data.referral_id: "declined"}
    assert while_closed == 403
    assert reopened == {accepted.data.referral_id: "accepted", declined.data.referral_id: "declined"}
    assert await may_act(conn, partner, accepted.data.referral_id) == 200


@pytest.mark.parametrize(("need", "grant", "reaches"), [
    ("no_food", "referral", True),
    ("housing", "referral", True),
    ("housing", "housing_support", True),
    ("job_search", "employment_support", True),
    ("work_trouble", "employment_support", True),
    ("no_food", "check_in", False),
    ("no_food", "housing_support", False),
    ("no_food", "employment_support", False),
    ("housing", "estate_clearance", False),
    ("job_search", "housing_support", False),
    ("no_food", "statutory basis for check_in", True),
])
async def test_a_referral_reaches_its_partner_under_a_consent_to_referral_or_to_its_needs_support(
        conn, need, grant, reaches):
    partner, case_id = await a_partner(conn), uuid7()
    await grant_for(conn, case_id, partner, grant)
    requested = referral(case_id, partner, need)
    await handle(conn, on_referral_requested, requested)
    await handle(conn, fan_out, Envelope(data=ReferralAccepted(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, referral_id=requested.data.referral_id,
        recipient=requested.data.recipient), id=uuid7(), source="/tsunagu/referral"))

    delivered = {r["event_type"] for r in await conn.fetch("SELECT event_type FROM deliveries")}
    held = await conn.fetchval("SELECT count(*) FROM held_events")
    acts = await may_act(conn, partner, requested.data.referral_id)

    if reaches:
        assert (delivered, held, acts) == ({REQUESTED, ACCEPTED}, 0, 200)
    else:
        assert (delivered, held, acts) == (set(), 2, 403), f"a consent to {grant} is not one to a {need} referral"


async def test_a_referral_held_under_a_consent_for_another_purpose_is_swept_out_only_by_a_fitting_one(
        conn, database):
    partner, case_id = await a_partner(conn), uuid7()
    await handle(conn, on_consent_granted, consent(case_id, partner, "check_in"))
    await handle(conn, on_referral_requested, referral(case_id, partner, "housing"))
    held = await conn.fetchval("SELECT count(*) FROM held_events")
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        sweeper = HeldSweeper(partial(unit_of_work, pool, Repository), CollectorRegistry())
        under_check_in = await sweeper.sweep(today=MORNING.date())
        # A consent that fits, recorded without releasing what was held (the sweep's reason to be).
        await conn.execute("INSERT INTO permissions (grant_id, case_id, partner_id, person_ref, basis, purpose) "
                           "VALUES ($1, $2, $3, $4, 'consent', 'housing_support')", uuid7(), case_id, partner,
                           uuid7())
        under_housing_support = await sweeper.sweep(today=MORNING.date())
    finally:
        await pool.close()

    assert (held, under_check_in, under_housing_support) == (1, 0, 1)
    assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_type = $1", REQUESTED) == 1


async def test_the_partner_is_told_of_a_withdrawal_whatever_the_consent_was_for(conn):
    partner, case_id = await a_partner(conn), uuid7()
    granted = consent(case_id, partner, "check_in")
    await handle(conn, on_consent_granted, granted)
    g = granted.data
    await handle(conn, on_consent_withdrawn, Envelope(data=ConsentWithdrawn(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=g.consent_id,
        person_ref=g.person_ref, recipient=g.recipient, purpose=g.purpose), id=uuid7(), source="/tsunagu/intake"))

    assert await conn.fetchval("SELECT event_type FROM deliveries") == ConsentWithdrawn.type


PERSON = {"name": "相模 太郎", "name_kana": "さがみ たろう", "phone": "046-000-0000", "address": "座間市入谷西0-0-0",
          "summary": {"needs": ["housing"], "primary_need": "housing", "urgency": "high",
                      "notes": "家賃を3か月滞納していると話された。"}}


@pytest.mark.parametrize(("need", "grant", "items"), [
    ("no_food", "referral", ["name", "name_kana", "phone"]),
    ("housing", "referral", ["name", "name_kana", "phone"]),
    ("housing", "housing_support", ["name", "name_kana", "phone", "address"]),
    ("job_search", "employment_support", ["name", "name_kana", "phone"]),
    ("no_food", "statutory basis for check_in", ["name", "phone", "address"]),
    ("no_food", "statutory basis for estate_clearance", ["name", "address"]),
])
async def test_a_partner_receives_and_the_provision_records_only_the_items_the_purpose_needs(
        conn, pool, need, grant, items):
    partner, case_id, person_ref = await a_partner(conn), uuid7(), uuid7()
    await grant_for(conn, case_id, partner, grant)
    requested = referral(case_id, partner, need)
    await handle(conn, on_referral_requested, requested)

    async def intake(asked_for: UUID, **_partner_and_purpose) -> dict:
        assert asked_for == case_id
        return {"person_ref": str(person_ref), **PERSON}

    provided = await provide(partial(unit_of_work, pool, Repository), partner, requested.data.referral_id, intake,
                             now=MORNING)
    recorded = await conn.fetchrow("SELECT person_ref, items, purpose FROM provisions")

    assert provided["person"] == {"person_ref": str(person_ref), **{item: PERSON[item] for item in items}}
    assert provided["provision"]["items"] == items
    assert (recorded["person_ref"], recorded["items"]) == (person_ref, items), "exactly what was provided"
    assert recorded["purpose"] == grant.rsplit(" ", 1)[-1]


async def test_an_item_intake_does_not_hold_is_neither_provided_nor_recorded(conn, pool):
    partner, case_id = await a_partner(conn), uuid7()
    await handle(conn, on_consent_granted, consent(case_id, partner, "referral"))
    requested = referral(case_id, partner)
    await handle(conn, on_referral_requested, requested)

    async def intake(_case_id: UUID, **_asked_for) -> dict:
        return {"person_ref": str(uuid7()), **PERSON, "phone": None}

    provided = await provide(partial(unit_of_work, pool, Repository), partner, requested.data.referral_id, intake,
                             now=MORNING)

    assert set(provided["person"]) == {"person_ref", "name", "name_kana"}
    assert await conn.fetchval("SELECT items FROM provisions") == ["name", "name_kana"]


async def test_withdrawing_the_consent_to_referral_withdraws_its_pending_notices_despite_a_check_in_consent(conn):
    partner, case_id = await a_partner(conn), uuid7()
    to_referral, to_check_ins = consent(case_id, partner, "referral"), consent(case_id, partner, "check_in")
    for granted in (to_referral, to_check_ins):
        await handle(conn, on_consent_granted, granted)
    await handle(conn, on_referral_requested, referral(case_id, partner))
    g = to_referral.data
    await handle(conn, on_consent_withdrawn, Envelope(data=ConsentWithdrawn(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=g.consent_id,
        person_ref=g.person_ref, recipient=g.recipient, purpose=g.purpose), id=uuid7(), source="/tsunagu/intake"))

    assert dict(await conn.fetch("SELECT event_type, status FROM deliveries")) == {
        REQUESTED: "withdrawn", ConsentWithdrawn.type: "pending"}, "a consent to check-ins is not one to referrals"


async def test_a_withdrawal_takes_back_what_was_forwarded_to_the_partners_topic_and_is_not_yet_published(conn):
    async with unit_of_work_on(conn, Repository) as uow:
        created = await register_partner(uow, RegisterPartner(
            name="フードバンクかながわ", need_categories=["no_food"], areas=["142166"],
            contact={"department": "相談窓口", "email": "desk@example.org"}, kafka_topic=True),
            partner_id=uuid7(), cipher=CIPHER, now=MORNING)
    partner, case_id = UUID(created["partner_id"]), uuid7()
    to_referral, to_check_ins = consent(case_id, partner, "referral"), consent(case_id, partner, "check_in")
    for granted in (to_referral, to_check_ins):
        await handle(conn, on_consent_granted, granted)
    published, unpublished = referral(case_id, partner), referral(case_id, partner)
    await handle(conn, on_referral_requested, published)
    await conn.execute("UPDATE outbox SET published_at = now() WHERE event_id = $1", published.id)
    await handle(conn, on_referral_requested, unpublished)
    g = to_referral.data
    withdrawn = Envelope(data=ConsentWithdrawn(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=g.consent_id,
        person_ref=g.person_ref, recipient=g.recipient, purpose=g.purpose), id=uuid7(), source="/tsunagu/intake")
    await handle(conn, on_consent_withdrawn, withdrawn)

    forwarded = await conn.fetch("SELECT event_id FROM outbox WHERE topic = $1 ORDER BY id", created["kafka_topic"])
    assert [r["event_id"] for r in forwarded] == [published.id, withdrawn.id], \
        "the published referral cannot be taken back; the unpublished one is, and the partner is told"


async def test_after_a_statutory_basis_ends_the_sender_sends_the_notice_and_nothing_it_alone_allowed(conn):
    partner, case_id = await a_partner(conn), uuid7()
    recorded = basis(case_id, partner, "referral")
    await handle(conn, on_basis_recorded, recorded)
    await handle(conn, on_referral_requested, referral(case_id, partner))
    b = recorded.data
    await handle(conn, on_basis_ended, Envelope(data=StatutoryBasisEnded(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, basis_id=b.basis_id, decision_id=uuid7(),
        person_ref=b.person_ref, basis=b.basis, recipient=b.recipient, purpose=b.purpose),
        id=uuid7(), source="/tsunagu/intake"))
    await conn.execute("UPDATE deliveries SET status = 'pending'")  # as if both were queued and not yet sent

    async with unit_of_work_on(conn, Repository) as uow:
        withdrawn = await uow.repo.deliveries.withdraw_due_unseen(MORNING.date())
        claimed = await uow.repo.deliveries.claim(MORNING.date(), {}, per_partner=10, limit=10, lease_s=30)

    assert withdrawn == 1, "the referral it alone allowed"
    assert [row["event_type"] for row in claimed] == [StatutoryBasisEnded.type]
