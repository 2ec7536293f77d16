"""The partner handlers' rules on in-memory fakes (conftest.py): a partner hears of a referral only
under a permission for its purpose, valid when it was made, else it is held; a withdrawal stops
what was not yet sent; the sweep releases what may now be seen; a closed case closes its partner
referrals until it is reopened."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from uuid import UUID

import pytest
from cryptography.fernet import Fernet, MultiFernet
from prometheus_client import CollectorRegistry

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ConsentGranted, ConsentWithdrawn, DeliveryFailed, Envelope, ReferralAccepted,
    ReferralRequested, StatutoryBasisEnded, StatutoryBasisRecorded, encode, uuid7,
)
from tsunagu_contracts.codes import PartnerResponseKind as Answer
from tsunagu_contracts.japan import JST
from tsunagu_partners.domain.commands import RegisterPartner, RespondToReferral, Subscription
from tsunagu_partners.handlers import fan_out as f
from tsunagu_partners.handlers.details import provide
from tsunagu_partners.handlers.registry import partner_of_token, register_partner, set_subscription, token_hash
from tsunagu_partners.handlers.responses import respond
from tsunagu_partners.handlers.sweep import HeldSweeper
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_servicehost.errors import Rejected, Why

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
TODAY = MORNING.date()
REQUESTED, WITHDRAWN = ReferralRequested.type, ConsentWithdrawn.type
CIPHER = MultiFernet([Fernet(Fernet.generate_key())])


async def a_partner(uow, *, webhook: bool = True, kafka: bool = False, needs=("no_food", "housing")) -> UUID:
    created = await register_partner(uow, RegisterPartner(
        name="ざまフードバンク", need_categories=list(needs), areas=["142166"],
        contact={"department": "相談窓口", "email": "desk@example.org"},
        webhook_url="https://partner.example.org/hook" if webhook else None, kafka_topic=kafka),
        partner_id=uuid7(), cipher=CIPHER, now=MORNING)
    return UUID(created["partner_id"])


def referral(case_id: UUID, partner_id: UUID, need: str = "no_food", at: datetime = MORNING
             ) -> Envelope[ReferralRequested]:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return Envelope(data=ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": need, "occurred_at": at.isoformat(),
        "recipient": {"kind": "partner", "partner_id": str(partner_id)}}), id=uuid7(), source="/tsunagu/referral")


def consent(case_id: UUID, partner_id: UUID, purpose: str = "referral", *, valid_until: date | None = None,
            at: datetime = MORNING) -> Envelope[ConsentGranted]:
    return Envelope(data=ConsentGranted(
        case_id=case_id, municipality_code="142166", occurred_at=at, consent_id=uuid7(), person_ref=uuid7(),
        recipient={"kind": "partner", "partner_id": partner_id}, purpose=purpose, method="written",
        valid_until=valid_until), id=uuid7(), source="/tsunagu/intake")


def basis(case_id: UUID, partner_id: UUID, *, valid_until: date | None = None) -> Envelope[StatutoryBasisRecorded]:
    return Envelope(data=StatutoryBasisRecorded(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, basis_id=uuid7(), person_ref=uuid7(),
        basis="support_conference_sra_9", recipient={"kind": "partner", "partner_id": partner_id},
        purpose="referral", decided_on=TODAY, valid_until=valid_until), id=uuid7(), source="/tsunagu/intake")


def basis_ended(recorded: Envelope[StatutoryBasisRecorded]) -> Envelope[StatutoryBasisEnded]:
    b = recorded.data
    return Envelope(data=StatutoryBasisEnded(
        case_id=b.case_id, municipality_code="142166", occurred_at=MORNING + timedelta(hours=1), basis_id=b.basis_id,
        decision_id=uuid7(), person_ref=b.person_ref, basis=b.basis, recipient=b.recipient, purpose=b.purpose),
        id=uuid7(), source="/tsunagu/intake")


def withdrawal(granted: Envelope[ConsentGranted], at: datetime = MORNING + timedelta(hours=1)
               ) -> Envelope[ConsentWithdrawn]:
    g = granted.data
    return Envelope(data=ConsentWithdrawn(
        case_id=g.case_id, municipality_code="142166", occurred_at=at, consent_id=g.consent_id,
        person_ref=g.person_ref, recipient=g.recipient, purpose=g.purpose), id=uuid7(), source="/tsunagu/intake")


def case_event(event_type, case_id: UUID, **data) -> Envelope:
    return Envelope(data=event_type(case_id=case_id, municipality_code="142166", occurred_at=MORNING, **data),
                    id=uuid7(), source="/tsunagu/referral")


def delivered(repo, partner_id: UUID | None = None) -> dict[str, str]:
    """Event type → delivery status, of the partner's deliveries (of everyone's, without one)."""
    return {d["event_type"]: d["status"] for d in repo.tables.deliveries if partner_id in (None, d["partner_id"])}


def held(repo) -> list[tuple[UUID, UUID]]:
    return [(h["case_id"], h["partner_id"]) for h in repo.tables.held]


# the fan-out ---------------------------------------------------------------------------------------

async def test_a_referral_to_a_partner_with_consent_for_its_purpose_is_queued_for_its_webhook(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, "referral"))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    [queued] = repo.tables.deliveries
    assert (queued["partner_id"], queued["event_id"], queued["status"]) == (partner, requested.id, "pending")
    assert json.loads(queued["body"])["id"] == str(requested.id), "the webhook carries the event's own id"
    assert queued["purposes"] == ["referral"], "kept for a withdrawal to decide on"
    assert held(repo) == []


async def test_a_referral_to_a_partner_without_any_permission_is_held_not_delivered(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo) == {}
    assert held(repo) == [(case_id, partner)]


@pytest.mark.parametrize(("need", "purpose"), [("no_food", "housing_support"), ("housing", "check_in"),
                                               ("no_food", "estate_clearance")])
async def test_a_referral_under_a_consent_for_another_purpose_is_held(uow, repo, need, purpose):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, purpose))
    await f.on_referral_requested(uow, referral(case_id, partner, need))

    assert delivered(repo) == {}
    assert held(repo) == [(case_id, partner)]


async def test_a_referral_made_after_its_consent_ran_out_is_held(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, valid_until=TODAY - timedelta(days=1),
                                            at=MORNING - timedelta(days=30)))
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo) == {}
    assert held(repo) == [(case_id, partner)]


async def test_a_consent_valid_through_the_day_of_the_referral_still_reaches_it(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, valid_until=TODAY))
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo) == {REQUESTED: "pending"}


async def test_a_housing_referral_reaches_its_partner_under_a_consent_to_housing_support(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, "housing_support"))
    await f.on_referral_requested(uow, referral(case_id, partner, "housing"))

    assert delivered(repo) == {REQUESTED: "pending"}


async def test_a_statutory_basis_reaches_a_referral_without_any_consent(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_basis_recorded(uow, basis(case_id, partner))
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo) == {REQUESTED: "pending"}


async def test_a_referral_addressed_to_one_partner_is_not_delivered_to_another_that_may_see_the_case(uow, repo):
    addressee, bystander, case_id = await a_partner(uow), await a_partner(uow), uuid7()
    for partner in (addressee, bystander):
        await f.on_consent_granted(uow, consent(case_id, partner))
    await f.on_referral_requested(uow, referral(case_id, addressee))

    assert delivered(repo, addressee) == {REQUESTED: "pending"}
    assert delivered(repo, bystander) == {}


async def test_a_partner_on_kafka_gets_the_event_forwarded_to_its_topic_under_the_events_own_id(uow, repo):
    partner, case_id = await a_partner(uow, webhook=False, kafka=True), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    [forward] = uow.forwarded
    topic = repo.tables.partners[partner]["kafka_topic"]
    assert (forward.topic, forward.event_id, forward.source) == (topic, requested.id, requested.source)
    assert forward.event == requested.data and repo.tables.deliveries == [], "no webhook to queue for"


async def test_an_event_already_in_the_outbox_for_the_partners_topic_is_not_forwarded_again(uow, repo):
    partner, case_id = await a_partner(uow, webhook=False, kafka=True), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    repo.tables.outbox.add((requested.id, repo.tables.partners[partner]["kafka_topic"]))
    await f.on_referral_requested(uow, requested)

    assert uow.forwarded == []


async def test_a_redelivered_event_is_queued_once(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    for _ in range(2):
        await f.on_referral_requested(uow, requested)

    assert len(repo.tables.deliveries) == 1


async def test_the_consent_releases_what_was_held_for_its_partner_and_it_is_delivered(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)
    await f.on_consent_granted(uow, consent(case_id, partner))

    assert held(repo) == []
    assert [d["event_id"] for d in repo.tables.deliveries] == [requested.id]


async def test_a_consent_for_another_purpose_releases_the_held_referral_only_to_hold_it_again(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_referral_requested(uow, referral(case_id, partner))
    await f.on_consent_granted(uow, consent(case_id, partner, "check_in"))

    assert delivered(repo) == {}
    assert held(repo) == [(case_id, partner)]


def recorded(repo) -> list[tuple]:
    """Every call the handler makes on the repository from now on: (method, first argument)."""
    calls: list[tuple] = []

    def record(method):
        async def call(*args, **kwargs):
            calls.append((method.__name__, args[0] if args else None))
            return await method(*args, **kwargs)
        return call

    for adapter in (a for name, a in vars(repo).items() if name != "tables"):
        for name in [n for n in dir(adapter) if not n.startswith("_") and callable(getattr(adapter, n))]:
            setattr(adapter, name, record(getattr(adapter, name)))
    return calls


@pytest.mark.parametrize("handler", ["on_consent_granted", "on_referral_requested", "on_consent_withdrawn",
                                     "on_basis_ended", "on_case_closed", "fan_out"])
async def test_every_fan_out_handler_takes_the_cases_lock_first(uow, repo, handler):
    partner, case_id = await a_partner(uow), uuid7()
    granted = consent(case_id, partner)
    envelope = {
        "on_consent_granted": granted, "on_referral_requested": referral(case_id, partner),
        "on_consent_withdrawn": withdrawal(granted), "on_basis_ended": basis_ended(basis(case_id, partner)),
        "on_case_closed": case_event(CaseClosed, case_id, reason="resolved"),
        "fan_out": case_event(CaseReopened, case_id, consultation_id=uuid7()),
    }[handler]
    calls = recorded(repo)
    await getattr(f, handler)(uow, envelope)

    assert calls[0] == ("lock_case", case_id)
    assert len(calls) > 1, "and reads or writes under it"


# withdrawal ----------------------------------------------------------------------------------------

async def test_a_withdrawal_withdraws_the_partners_pending_deliveries_of_the_case_and_tells_it(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    granted = consent(case_id, partner)
    await f.on_consent_granted(uow, granted)
    await f.on_referral_requested(uow, referral(case_id, partner))
    await f.on_consent_withdrawn(uow, withdrawal(granted))

    assert delivered(repo, partner) == {REQUESTED: "withdrawn", WITHDRAWN: "pending"}


async def test_a_withdrawal_touches_neither_other_partners_nor_other_cases(uow, repo):
    partner, other_partner, case_id, other_case = await a_partner(uow), await a_partner(uow), uuid7(), uuid7()
    granted = consent(case_id, partner)
    for c, p in ((case_id, other_partner), (other_case, partner)):
        await f.on_consent_granted(uow, consent(c, p))
        await f.on_referral_requested(uow, referral(c, p))
    await f.on_consent_granted(uow, granted)
    await f.on_consent_withdrawn(uow, withdrawal(granted))

    untouched = [d["status"] for d in repo.tables.deliveries if d["event_type"] == REQUESTED]
    assert untouched == ["pending", "pending"]


@pytest.mark.parametrize(("need", "remaining", "referral_after"), [
    ("housing", "housing_support", "pending"),
    ("no_food", "check_in", "withdrawn"),
    ("no_food", "statutory basis", "pending"),
])
async def test_a_withdrawal_leaves_a_referral_pending_only_while_what_remains_still_reaches_it(
        uow, repo, need, remaining, referral_after):
    partner, case_id = await a_partner(uow), uuid7()
    withdrawn = consent(case_id, partner, "referral")
    await f.on_consent_granted(uow, withdrawn)
    if remaining == "statutory basis":
        await f.on_basis_recorded(uow, basis(case_id, partner))
    else:
        await f.on_consent_granted(uow, consent(case_id, partner, remaining))
    await f.on_referral_requested(uow, referral(case_id, partner, need))
    await f.on_consent_withdrawn(uow, withdrawal(withdrawn))

    assert delivered(repo, partner) == {REQUESTED: referral_after, WITHDRAWN: "pending"}


async def test_a_referral_fanned_out_after_the_withdrawal_is_held_not_delivered(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    granted = consent(case_id, partner)
    await f.on_consent_granted(uow, granted)
    await f.on_consent_withdrawn(uow, withdrawal(granted))
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo, partner) == {WITHDRAWN: "pending"}
    assert held(repo) == [(case_id, partner)]


async def test_a_withdrawal_releases_nothing_that_was_held(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    granted = consent(case_id, partner, "check_in")
    await f.on_consent_granted(uow, granted)
    await f.on_referral_requested(uow, referral(case_id, partner))
    await f.on_consent_withdrawn(uow, withdrawal(granted))

    assert held(repo) == [(case_id, partner)]
    assert delivered(repo, partner) == {WITHDRAWN: "pending"}


async def test_a_withdrawal_for_a_partner_that_receives_on_kafka_is_forwarded_to_its_topic(uow, repo):
    partner, case_id = await a_partner(uow, webhook=False, kafka=True), uuid7()
    granted = consent(case_id, partner)
    await f.on_consent_granted(uow, granted)
    told = withdrawal(granted)
    await f.on_consent_withdrawn(uow, told)

    assert [(w.event_id, w.topic) for w in uow.forwarded] == [(told.id, repo.tables.partners[partner]["kafka_topic"])]



def committed_not_yet_published(uow, repo) -> None:
    """What the unit of work forwarded is in the outbox, and the relay has not run yet."""
    for forward in uow.forwarded:
        record = encode(forward.event, source=forward.source, event_id=forward.event_id)
        repo.tables.unpublished.append({
            "id": len(repo.tables.unpublished), "event_id": forward.event_id, "topic": forward.topic,
            "record_key": record.key.decode(), "value": record.value,
            "headers": json.dumps({k: v.decode() for k, v in record.headers})})
    uow.forwarded.clear()


@pytest.mark.parametrize(("remaining", "kept"), [(None, False), ("check_in", False), ("referral", True)])
async def test_a_withdrawal_takes_back_a_forward_not_yet_published_unless_what_remains_still_reaches_it(
        uow, repo, remaining, kept):
    partner, case_id = await a_partner(uow, webhook=False, kafka=True), uuid7()
    withdrawn = consent(case_id, partner)
    await f.on_consent_granted(uow, withdrawn)
    if remaining:
        await f.on_consent_granted(uow, consent(case_id, partner, remaining))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)
    committed_not_yet_published(uow, repo)
    await f.on_consent_withdrawn(uow, withdrawal(withdrawn))

    assert [r["event_id"] for r in repo.tables.unpublished] == ([requested.id] if kept else [])


async def test_an_ended_statutory_basis_withdraws_what_it_alone_allowed_and_tells_the_partner(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    recorded = basis(case_id, partner)
    await f.on_basis_recorded(uow, recorded)
    await f.on_referral_requested(uow, referral(case_id, partner))
    ended = basis_ended(recorded)
    await f.on_basis_ended(uow, ended)
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo, partner) == {REQUESTED: "withdrawn", StatutoryBasisEnded.type: "pending"}
    assert held(repo) == [(case_id, partner)], "a referral after the end waits for a permission"


async def test_a_statutory_basis_past_its_last_day_reaches_nothing(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_basis_recorded(uow, basis(case_id, partner, valid_until=TODAY - timedelta(days=1)))
    await f.on_referral_requested(uow, referral(case_id, partner))

    assert delivered(repo, partner) == {}
    assert held(repo) == [(case_id, partner)]

# the held sweep ------------------------------------------------------------------------------------

async def test_the_sweep_releases_held_events_whose_permission_now_exists_and_leaves_the_others(uow, repo, new_uow):
    partner = await a_partner(uow)
    allowed, expired, other_purpose, without = uuid7(), uuid7(), uuid7(), uuid7()
    for case_id in (allowed, expired, other_purpose, without):
        await f.on_referral_requested(uow, referral(case_id, partner))
    # Permissions recorded without releasing what was held (the sweep's reason to be).
    repo.tables.add_grant(allowed, partner, "consent", "referral")
    repo.tables.add_grant(expired, partner, "consent", "referral", valid_until=TODAY - timedelta(days=1))
    repo.tables.add_grant(other_purpose, partner, "consent", "check_in")
    registry = CollectorRegistry()

    released = await HeldSweeper(new_uow, registry).sweep(today=TODAY)

    assert released == 1
    assert [d["case_id"] for d in repo.tables.deliveries] == [allowed]
    assert sorted(held(repo)) == sorted([(expired, partner), (other_purpose, partner), (without, partner)])
    assert registry.get_sample_value("tsunagu_partners_held_events") == 3
    assert registry.get_sample_value("tsunagu_partners_held_events_released_total") == 1


async def test_the_sweep_leaves_a_case_whose_lock_a_consumer_holds_to_the_next_pass(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_referral_requested(uow, referral(case_id, partner))
    repo.tables.add_grant(case_id, partner, "consent", "referral")
    repo.tables.busy_cases.add(case_id)
    sweeper = HeldSweeper(new_uow, CollectorRegistry())

    assert await sweeper.sweep(today=TODAY) == 0 and held(repo) == [(case_id, partner)]
    repo.tables.busy_cases.clear()
    assert await sweeper.sweep(today=TODAY) == 1 and held(repo) == []


async def test_the_sweep_leaves_held_what_only_a_consent_no_longer_valid_today_would_reach(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_referral_requested(uow, referral(case_id, partner))
    repo.tables.add_grant(case_id, partner, "consent", "referral", valid_until=TODAY)

    assert await HeldSweeper(new_uow, CollectorRegistry()).sweep(today=TODAY + timedelta(days=1)) == 0
    assert held(repo) == [(case_id, partner)]


# closing and reopening a case ----------------------------------------------------------------------

async def test_closing_a_case_closes_its_active_partner_referrals_and_reopening_restores_each_status(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested, accepted, declined = (referral(case_id, partner) for _ in range(3))
    for r in (requested, accepted, declined):
        await f.on_referral_requested(uow, r)
    repo.tables.referrals[accepted.data.referral_id]["status"] = "accepted"
    repo.tables.referrals[declined.data.referral_id]["status"] = "declined"

    def statuses():
        return [repo.tables.referrals[r.data.referral_id]["status"] for r in (requested, accepted, declined)]

    await f.on_case_closed(uow, case_event(CaseClosed, case_id, reason="resolved"))
    assert statuses() == ["closed", "closed", "declined"]
    await f.on_case_reopened(uow, case_event(CaseReopened, case_id, consultation_id=uuid7()))
    assert statuses() == ["requested", "accepted", "declined"]


async def test_closing_one_case_leaves_the_referrals_of_another_alone(uow, repo):
    partner, case_id, other_case = await a_partner(uow), uuid7(), uuid7()
    other = referral(other_case, partner)
    for r in (referral(case_id, partner), other):
        await f.on_referral_requested(uow, r)
    await f.on_case_closed(uow, case_event(CaseClosed, case_id, reason="resolved"))

    assert repo.tables.referrals[other.data.referral_id]["status"] == "requested"


async def test_a_partner_may_not_answer_a_referral_of_a_closed_case_until_it_is_reopened(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)
    await f.on_case_closed(uow, case_event(CaseClosed, case_id, reason="resolved"))
    accept = RespondToReferral(response="accepted")

    with pytest.raises(Rejected) as refusal:
        await respond(uow, partner, requested.data.referral_id, accept, now=MORNING)
    assert refusal.value.why in (Why.FORBIDDEN, Why.CONFLICT) and not uow.events

    await f.on_case_reopened(uow, case_event(CaseReopened, case_id, consultation_id=uuid7()))
    await respond(uow, partner, requested.data.referral_id, accept, now=MORNING)
    assert [e.response for e in uow.events] == [Answer.ACCEPTED]


# the referral's own events and the partner's answers -----------------------------------------------

async def test_a_referral_event_moves_the_partners_copy_but_never_back_past_the_partners_own_answer(uow, repo):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)
    referral_id = requested.data.referral_id
    accepted = case_event(ReferralAccepted, case_id, referral_id=referral_id, recipient=requested.data.recipient)

    await f.fan_out(uow, accepted)
    assert repo.tables.referrals[referral_id]["status"] == "accepted"
    await respond(uow, partner, referral_id, RespondToReferral(response="contact_made", contact_method="phone"),
                  now=MORNING)
    await f.fan_out(uow, accepted)  # referral's event for the acceptance, arriving late
    assert repo.tables.referrals[referral_id]["status"] == "contact_made"


# details -------------------------------------------------------------------------------------------

PERSON = {"name": "相模 太郎", "name_kana": "さがみ たろう", "phone": "046-000-0000", "address": "座間市入谷西0-0-0"}


async def test_a_detail_fetch_gives_and_records_only_the_items_the_consents_purpose_needs(uow, repo, new_uow):
    partner, case_id, person_ref = await a_partner(uow), uuid7(), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, "referral"))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    async def intake(_case_id, **_asked_for):
        return {"person_ref": str(person_ref), **PERSON}

    given = await provide(new_uow, partner, requested.data.referral_id, intake, now=MORNING)

    assert set(given["person"]) == {"person_ref", "name", "name_kana", "phone"}
    [provision] = repo.tables.provisions
    assert (provision["person_ref"], provision["items"], provision["purpose"]) == (
        person_ref, ["name", "name_kana", "phone"], "referral")


async def test_a_consent_withdrawn_while_intake_answers_refuses_the_fetch_and_records_nothing(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    granted = consent(case_id, partner)
    await f.on_consent_granted(uow, granted)
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    async def intake(_case_id, **_asked_for):
        await f.on_consent_withdrawn(uow, withdrawal(granted))
        return {"person_ref": str(uuid7()), **PERSON}

    with pytest.raises(Rejected) as refusal:
        await provide(new_uow, partner, requested.data.referral_id, intake, now=MORNING)

    assert refusal.value.why is Why.FORBIDDEN
    assert repo.tables.provisions == []
    assert case_id in repo.tables.locked[-1:], "decided again under the case's lock"


async def test_intake_is_asked_for_the_partner_and_the_purpose_the_details_are_given_for(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner, "housing_support"))
    requested = referral(case_id, partner, "housing")
    await f.on_referral_requested(uow, requested)
    asked = []

    async def intake(_case_id, *, partner_id, purpose):
        asked.append((partner_id, purpose))
        return {"person_ref": str(uuid7()), **PERSON}

    given = await provide(new_uow, partner, requested.data.referral_id, intake, now=MORNING)

    assert asked == [(partner, "housing_support")]
    assert given["provision"]["purpose"] == "housing_support"


async def test_a_fetch_whose_purpose_changed_while_intake_answered_is_refused_and_records_nothing(
        uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    granted = {purpose: consent(case_id, partner, purpose) for purpose in ("referral", "housing_support")}
    for envelope in granted.values():
        await f.on_consent_granted(uow, envelope)
    requested = referral(case_id, partner, "housing")
    await f.on_referral_requested(uow, requested)

    async def intake(_case_id, *, partner_id, purpose):
        await f.on_consent_withdrawn(uow, withdrawal(granted[purpose]))  # intake recorded this purpose
        return {"person_ref": str(uuid7()), **PERSON}

    with pytest.raises(Rejected) as refusal:
        await provide(new_uow, partner, requested.data.referral_id, intake, now=MORNING)

    assert refusal.value.why is Why.CONFLICT
    assert repo.tables.provisions == []


async def test_a_detail_fetch_for_a_referral_addressed_elsewhere_never_asks_intake(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    async def intake(_case_id, **_asked_for):
        raise AssertionError("intake asked for another partner's referral")

    with pytest.raises(Rejected) as refusal:
        await provide(new_uow, uuid7(), requested.data.referral_id, intake, now=MORNING)
    assert refusal.value.why is Why.NOT_FOUND


# the registry --------------------------------------------------------------------------------------

async def test_a_registered_partner_hears_of_its_own_needs_and_areas_and_is_known_by_its_token_alone(uow, repo):
    created = await register_partner(uow, RegisterPartner(
        name="居住支援法人 すまいる", need_categories=["housing"], areas=["142166"],
        contact={"department": "相談窓口", "email": "desk@example.org"}, webhook_url="https://example.org/hook"),
        partner_id=uuid7(), cipher=CIPHER, now=MORNING)
    partner = UUID(created["partner_id"])

    assert repo.tables.subscriptions[partner] == {"event_types": [], "need_categories": ["housing"],
                                                  "areas": ["142166"]}
    assert repo.tables.partners[partner]["api_token_hash"] == token_hash(created["api_token"])
    assert CIPHER.decrypt(repo.tables.partners[partner]["webhook_secret"]).decode() == created["webhook_secret"]
    assert await partner_of_token(uow, created["api_token"]) == partner
    assert await partner_of_token(uow, created["api_token"] + "x") is None


async def test_the_subscription_of_an_unknown_partner_is_not_found(uow):
    with pytest.raises(Rejected) as refusal:
        await set_subscription(uow, uuid7(), Subscription(event_types=[], need_categories=["housing"], areas=[]))
    assert refusal.value.why is Why.NOT_FOUND


# the webhook sender's outcome ----------------------------------------------------------------------

async def the_last_attempt_fails(uow, repo, new_uow, status_meanwhile: str) -> dict:
    """A referral's delivery, its status set to `status_meanwhile` while its last attempt is sent and
    answered 503; gives the delivery's row."""
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    await f.on_referral_requested(uow, referral(case_id, partner))
    [row] = repo.tables.deliveries
    row["status"] = status_meanwhile
    sender = WebhookSender(None, new_uow, CIPHER, DeliveryPolicy(retry_schedule=(1.0,)))  # two attempts
    await sender.record({**row, "attempts": 2}, 503, None, None)
    return row


async def test_a_delivery_out_of_retries_is_a_dead_letter_and_reported_as_delivery_failed(uow, repo, new_uow):
    row = await the_last_attempt_fails(uow, repo, new_uow, "sending")

    assert row["status"] == "dead"
    [failed] = [e for unit in new_uow.done for e in unit.of(DeliveryFailed)]
    assert (failed.partner_id, failed.delivery_id, failed.last_status) == (row["partner_id"], row["delivery_id"], 503)


async def test_a_request_that_never_reached_the_partner_refuses_its_answer_as_referral_would(uow, repo, new_uow):
    row = await the_last_attempt_fails(uow, repo, new_uow, "sending")
    [failed] = [e for unit in new_uow.done for e in unit.of(DeliveryFailed)]
    assert repo.tables.referrals[failed.referral_id]["status"] == "unreachable"

    with pytest.raises(Rejected) as refusal:
        await respond(uow, row["partner_id"], failed.referral_id, RespondToReferral(response="accepted"),
                      now=MORNING)
    assert refusal.value.why is Why.CONFLICT and "unreachable" in refusal.value.message_en


async def test_an_undelivered_request_the_partner_already_answered_keeps_the_answer(uow, repo, new_uow):
    partner, case_id = await a_partner(uow), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)
    await respond(uow, partner, requested.data.referral_id, RespondToReferral(response="accepted"), now=MORNING)
    [row] = repo.tables.deliveries
    row["status"] = "sending"
    sender = WebhookSender(None, new_uow, CIPHER, DeliveryPolicy(retry_schedule=(1.0,)))
    await sender.record({**row, "attempts": 2}, 503, None, None)

    assert repo.tables.referrals[requested.data.referral_id]["status"] == "accepted"


async def test_a_delivery_withdrawn_while_it_was_sent_stays_withdrawn_and_reports_nothing(uow, repo, new_uow):
    row = await the_last_attempt_fails(uow, repo, new_uow, "withdrawn")

    assert row["status"] == "withdrawn"
    assert [e for unit in new_uow.done for e in unit.events] == []


async def test_a_partner_with_neither_a_webhook_nor_a_topic_is_queued_a_mail_notice_of_a_referral_to_it(uow, repo):
    partner, case_id = await a_partner(uow, webhook=False, kafka=False), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    requested = referral(case_id, partner)
    await f.on_referral_requested(uow, requested)

    [mail] = repo.tables.deliveries
    assert (mail["channel"], mail["referral_id"], mail["event_id"]) == (
        "email", requested.data.referral_id, requested.id)
    assert uow.forwarded == []


async def test_a_partner_without_a_webhook_is_mailed_about_referrals_only(uow, repo):
    partner, case_id = await a_partner(uow, webhook=False, kafka=False), uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner))
    await f.on_case_closed(uow, Envelope(data=CaseClosed(case_id=case_id, municipality_code="142166",
                                                         occurred_at=MORNING, reason="stable_with_support"),
                                         id=uuid7(), source="/tsunagu/referral"))

    assert repo.tables.deliveries == []
