"""The referral handlers on in-memory fakes: a consultation asks someone for every need, answers move
a referral along its states, a refusal moves the need to the next candidate, a withdrawn consent
takes the need from the partner, the person is asked whether help arrived, and a closed case
stays closed until the person comes back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import pytest

from tsunagu_contracts import (
    CaseClosed, CaseReopened, CheckInRecorded, ConsentGranted, ConsentWithdrawn, ConsultationRegistered,
    DeliveryFailed, FollowUpAnswered, FollowUpDue, HousingSupportOpened, StatutoryBasisEnded, StatutoryBasisRecorded,
    NeedIdentified, PartnerResponded, Recipient, ReferralAccepted, ReferralCompleted, ReferralContactMade,
    ReferralDeclined, ReferralOverdue, ReferralRequested, ReferralRerouted, ReferralSheetOpened,
    TenancyStageChanged, uuid7,
)
from tsunagu_contracts.codes import (
    CaseClosureReason, CheckInResult, ContactMethod, DeclineReason, Division, FollowUpOutcome, NeedCategory,
    ReferralOutcome,
    RerouteReason, TenancyEndReason, TenancyStage,
)
from tsunagu_servicehost.errors import Rejected, Why
from tsunagu_referral.domain.model import Detail, Policy
from tsunagu_referral.domain.referral import Action, Status
from tsunagu_referral.domain.routing import FALLBACK
from tsunagu_referral.handlers import consent, follow_ups, housing, referrals, timers
from tsunagu_referral.handlers.deliveries import on_delivery_failed
from tsunagu_referral.handlers.partner_responses import on_partner_responded

POLICY = Policy()
PARTNER = uuid7()


def event(kind, **fields):
    """The contract's own documented example, with the fields a test cares about."""
    return kind.model_validate({**kind.model_config["json_schema_extra"]["examples"][0], **fields})


CONSULTATION = event(ConsultationRegistered)
NOW = CONSULTATION.occurred_at


async def a_consultation(uow, *needs: str, case_id: UUID | None = None, at=NOW) -> UUID:
    case_id = case_id or uuid7()
    await referrals.on_consultation_registered(uow, event(
        ConsultationRegistered, case_id=str(case_id), needs=list(needs), primary_need=needs[0], occurred_at=at,
        consultation_id=str(uuid7())), policy=POLICY)
    return case_id


def asked(uow, case_id: UUID, need: NeedCategory) -> list[tuple[Recipient, Status]]:
    return [(r.recipient, r.status) for r in sorted(uow.repo.referrals.values(), key=lambda r: r.requested_at)
            if r.case_id == case_id and r.need is need]


def referral_of(uow, case_id: UUID, need: NeedCategory):
    return next(r for r in uow.repo.referrals.values() if r.case_id == case_id and r.need is need
                and r.status.active)


async def do(uow, referral_id, action: Action, detail: Detail = Detail(), **kw):
    return await referrals.act(uow, referral_id, action, detail, now=NOW, policy=POLICY, **kw)


def division(d: str) -> Recipient:
    return Recipient.of_division(Division(d))


# opening the sheet --------------------------------------------------------------------------------

async def test_a_consultation_opens_the_sheet_and_asks_the_first_candidate_for_each_need_the_primary_first(uow):
    case_id = await a_consultation(uow, "rent_loan", "health")

    assert [type(e) for e in uow.events] == [ReferralSheetOpened, ReferralRequested, ReferralRequested]
    assert [(e.need, e.recipient, e.candidate_rank) for e in uow.of(ReferralRequested)] == [
        (NeedCategory.RENT_LOAN, division("self_reliance"), 1), (NeedCategory.HEALTH, division("health"), 1)]
    assert all(e.accept_by > NOW for e in uow.of(ReferralRequested))
    assert (await uow.repo.sheet(case_id)).needs == ["rent_loan", "health"]


async def test_a_second_consultation_joins_the_sheet_and_asks_only_for_needs_not_already_under_way(uow):
    case_id = await a_consultation(uow, "health")
    uow.events.clear()
    await a_consultation(uow, "health", "no_food", case_id=case_id)

    assert [(type(e), getattr(e, "need", None)) for e in uow.events] == [(ReferralRequested, NeedCategory.NO_FOOD)]
    assert (await uow.repo.sheet(case_id)).needs == ["health", "no_food"]


async def test_a_need_identified_later_is_referred_and_one_for_an_unknown_case_waits_for_its_consultation(uow):
    case_id = await a_consultation(uow, "health")
    uow.events.clear()
    await referrals.on_need_identified(uow, event(NeedIdentified, case_id=str(case_id), need="debt"), policy=POLICY)
    await referrals.on_need_identified(uow, event(NeedIdentified, case_id=str(uuid7()), need="debt"), policy=POLICY)

    assert [(e.case_id, e.need) for e in uow.of(ReferralRequested)] == [(case_id, NeedCategory.DEBT)]


# the state machine --------------------------------------------------------------------------------

async def test_a_referral_is_accepted_contacted_and_completed_and_contact_is_remembered_on_the_sheet(uow):
    case_id = await a_consultation(uow, "health")
    referral_id = referral_of(uow, case_id, NeedCategory.HEALTH).referral_id

    await do(uow, referral_id, Action.ACCEPT)
    await do(uow, referral_id, Action.CONTACT, Detail(method=ContactMethod.HOME_VISIT))
    done = await do(uow, referral_id, Action.COMPLETE, Detail(outcome=ReferralOutcome.SUPPORTED))

    assert [type(e) for e in uow.events[2:]] == [ReferralAccepted, ReferralContactMade, ReferralCompleted]
    assert (done.status, done.contact_method, done.outcome) == (Status.COMPLETED, "home_visit", "supported")
    assert (await uow.repo.sheet(case_id)).last_contact_at == NOW


async def test_a_move_the_state_machine_does_not_allow_is_refused_as_a_conflict_and_changes_nothing(uow):
    case_id = await a_consultation(uow, "health")
    referral = referral_of(uow, case_id, NeedCategory.HEALTH)
    emitted = len(uow.events)

    with pytest.raises(Rejected) as refused:
        await do(uow, referral.referral_id, Action.COMPLETE, Detail(outcome=ReferralOutcome.SUPPORTED))

    assert refused.value.why is Why.CONFLICT and "依頼中" in refused.value.message_ja
    assert await uow.repo.referral(referral.referral_id) == referral and len(uow.events) == emitted


async def test_an_unknown_referral_is_not_found(uow):
    with pytest.raises(Rejected) as refused:
        await do(uow, uuid7(), Action.ACCEPT)
    assert refused.value.why is Why.NOT_FOUND


# the next candidate ------------------------------------------------------------------------------

async def test_a_decline_asks_the_next_candidate_then_the_coordinator_then_nobody(uow):
    case_id = await a_consultation(uow, "health")

    first = referral_of(uow, case_id, NeedCategory.HEALTH)
    await do(uow, first.referral_id, Action.DECLINE, Detail(reason=DeclineReason.CAPACITY_FULL))
    second = referral_of(uow, case_id, NeedCategory.HEALTH)
    await do(uow, second.referral_id, Action.DECLINE, Detail(reason=DeclineReason.CAPACITY_FULL))

    assert asked(uow, case_id, NeedCategory.HEALTH) == [
        (division("health"), Status.DECLINED), (FALLBACK, Status.DECLINED)]
    rerouted = uow.of(ReferralRerouted)
    assert [(e.referral_id, e.new_recipient, e.reason) for e in rerouted] == [
        (first.referral_id, FALLBACK, RerouteReason.DECLINED)]
    assert [e.reason for e in uow.of(ReferralDeclined)] == [DeclineReason.CAPACITY_FULL] * 2


async def test_a_coordinator_reroutes_a_referral_to_the_recipient_they_name_at_the_same_rank(uow):
    case_id = await a_consultation(uow, "health")
    referral = referral_of(uow, case_id, NeedCategory.HEALTH)
    await do(uow, referral.referral_id, Action.ACCEPT)

    await do(uow, referral.referral_id, Action.REROUTE, Detail(recipient=Recipient.of_partner(PARTNER)))

    assert asked(uow, case_id, NeedCategory.HEALTH) == [
        (division("health"), Status.REROUTED), (Recipient.of_partner(PARTNER), Status.REQUESTED)]
    assert uow.of(ReferralRerouted)[0].reason is RerouteReason.STAFF_DECISION
    assert uow.of(ReferralRequested)[-1].candidate_rank == referral.candidate_rank


async def test_a_referral_added_by_hand_takes_the_next_rank_or_the_next_candidate_until_none_is_left(uow):
    case_id = await a_consultation(uow, "health")

    by_name = await referrals.add_referral(uow, case_id, NeedCategory.HEALTH, Recipient.of_partner(PARTNER), now=NOW,
                                           policy=POLICY)
    by_table = await referrals.add_referral(uow, case_id, NeedCategory.HEALTH, None, now=NOW, policy=POLICY)
    with pytest.raises(Rejected) as refused:
        await referrals.add_referral(uow, case_id, NeedCategory.HEALTH, None, now=NOW, policy=POLICY)

    assert (by_name.candidate_rank, by_table.recipient, by_table.candidate_rank) == (2, FALLBACK, 2)
    assert refused.value.why is Why.CONFLICT


# partners --------------------------------------------------------------------------------------------

async def a_partner_referral(uow) -> tuple[UUID, UUID]:
    await uow.repo.set_routes(NeedCategory.HOUSING, [Recipient.of_partner(PARTNER), division("housing")])
    case_id = await a_consultation(uow, "housing")
    return case_id, referral_of(uow, case_id, NeedCategory.HOUSING).referral_id


async def test_a_partners_answer_moves_its_referral_and_an_answer_that_no_longer_fits_is_skipped(uow):
    case_id, referral_id = await a_partner_referral(uow)
    accepted = event(PartnerResponded, partner_id=str(PARTNER), referral_id=str(referral_id), response="accepted")

    await on_partner_responded(uow, accepted, policy=POLICY)
    await on_partner_responded(uow, accepted, policy=POLICY)

    assert len(uow.of(ReferralAccepted)) == 1
    assert (await uow.repo.referral(referral_id)).status is Status.ACCEPTED


async def test_an_undelivered_referral_is_unreachable_and_the_need_goes_to_the_next_candidate_at_once(uow):
    case_id, referral_id = await a_partner_referral(uow)

    await on_delivery_failed(uow, event(DeliveryFailed, partner_id=str(PARTNER), referral_id=str(referral_id)),
                             policy=POLICY)

    assert asked(uow, case_id, NeedCategory.HOUSING) == [
        (Recipient.of_partner(PARTNER), Status.UNREACHABLE), (division("housing"), Status.REQUESTED)]
    assert uow.of(ReferralRerouted)[0].reason is RerouteReason.PARTNER_UNREACHABLE


async def test_another_partners_undelivered_notice_leaves_the_referral_as_it_is(uow):
    case_id, referral_id = await a_partner_referral(uow)
    emitted = len(uow.events)

    await on_delivery_failed(uow, event(DeliveryFailed, partner_id=str(uuid7()), referral_id=str(referral_id)),
                             policy=POLICY)

    assert (await uow.repo.referral(referral_id)).status is Status.REQUESTED and len(uow.events) == emitted


async def test_a_partner_may_not_act_on_a_referral_addressed_to_someone_else(uow):
    case_id, referral_id = await a_partner_referral(uow)
    with pytest.raises(Rejected) as refused:
        await do(uow, referral_id, Action.ACCEPT, recipient_must_be=Recipient.of_partner(uuid7()))
    assert refused.value.why is Why.FORBIDDEN


# closing and reopening ---------------------------------------------------------------------------

async def test_a_closed_case_refuses_actions_and_a_second_closing_and_a_new_consultation_reopens_it(uow):
    case_id = await a_consultation(uow, "health")
    referral_id = referral_of(uow, case_id, NeedCategory.HEALTH).referral_id

    await referrals.close_case(uow, case_id, CaseClosureReason.STABLE_WITH_SUPPORT, now=NOW)
    with pytest.raises(Rejected) as acting:
        await do(uow, referral_id, Action.ACCEPT)
    with pytest.raises(Rejected) as closing:
        await referrals.close_case(uow, case_id, CaseClosureReason.STABLE_WITH_SUPPORT, now=NOW)
    await a_consultation(uow, "no_food", case_id=case_id, at=NOW + timedelta(days=1))

    assert (acting.value.why, closing.value.why) == (Why.CONFLICT, Why.CONFLICT)
    assert [type(e) for e in uow.events[2:]] == [CaseClosed, CaseReopened, ReferralRequested]
    assert not (await uow.repo.sheet(case_id)).closed


async def test_a_need_identified_for_a_closed_case_is_not_referred(uow):
    case_id = await a_consultation(uow, "health")
    await referrals.close_case(uow, case_id, CaseClosureReason.STABLE_WITH_SUPPORT, now=NOW)
    emitted = len(uow.events)

    await referrals.on_need_identified(uow, event(NeedIdentified, case_id=str(case_id), need="debt"), policy=POLICY)

    assert len(uow.events) == emitted


# housing progress ----------------------------------------------------------------------------------

async def test_housing_support_accepts_contacts_and_completes_the_housing_referral(uow):
    case_id = await a_consultation(uow, "housing")
    referral_id = referral_of(uow, case_id, NeedCategory.HOUSING).referral_id

    await housing.on_support_opened(uow, event(HousingSupportOpened, case_id=str(case_id)), policy=POLICY)
    await housing.on_check_in_recorded(uow, event(CheckInRecorded, case_id=str(case_id), result="not_at_home"),
                                       policy=POLICY)
    assert (await uow.repo.referral(referral_id)).status is Status.ACCEPTED, "nobody was reached"
    await housing.on_stage_changed(uow, event(TenancyStageChanged, case_id=str(case_id)), policy=POLICY)
    await housing.on_stage_changed(uow, event(
        TenancyStageChanged, case_id=str(case_id), from_stage=TenancyStage.MOVE_IN, to_stage=TenancyStage.ENDED,
        end_reason=TenancyEndReason.MOVED_OUT), policy=POLICY)

    done = await uow.repo.referral(referral_id)
    assert (done.status, done.outcome) == (Status.COMPLETED, "supported"), "the person was housed"


async def test_a_check_in_that_reached_the_person_is_contact_even_when_the_referral_has_moved_on(uow):
    case_id = await a_consultation(uow, "health", "housing")
    later = NOW + timedelta(days=3)

    await housing.on_check_in_recorded(uow, event(
        CheckInRecorded, case_id=str(case_id), result=CheckInResult.WELL.value, occurred_at=later.isoformat()),
        policy=POLICY)

    assert not uow.of(ReferralContactMade), "a requested referral is not contacted by a check-in"
    assert (await uow.repo.sheet(case_id)).last_contact_at == later


# timers ------------------------------------------------------------------------------------------------

async def test_a_referral_not_accepted_in_time_is_escalated_once_and_a_closed_cases_never(uow):
    open_case = await a_consultation(uow, "health")
    closed_case = await a_consultation(uow, "debt")
    await referrals.close_case(uow, closed_case, CaseClosureReason.STABLE_WITH_SUPPORT, now=NOW)
    later = NOW + timedelta(days=30)

    first = await timers.raise_overdue_referrals(uow, now=later)
    again = await timers.raise_overdue_referrals(uow, now=later)

    assert (first, again) == (1, 0)
    assert [(e.case_id, e.escalated_to) for e in uow.of(ReferralOverdue)] == [(open_case, Division.SELF_RELIANCE)]


# consent withdrawn, statutory basis ended ---------------------------------------------------------

def consent_to(case_id: UUID, purpose: str, **fields) -> ConsentGranted:
    return event(ConsentGranted, case_id=str(case_id), consent_id=str(uuid7()), purpose=purpose,
                 recipient={"kind": "partner", "partner_id": str(PARTNER)}, valid_until=None, **fields)


def withdrawal_of(consent: ConsentGranted) -> ConsentWithdrawn:
    return event(ConsentWithdrawn, case_id=str(consent.case_id), consent_id=str(consent.consent_id),
                 purpose=consent.purpose.value, recipient=consent.recipient.model_dump(mode="json"))


async def test_a_withdrawn_consent_withdraws_the_partners_referral_and_a_division_takes_the_need(uow):
    await uow.repo.set_routes(NeedCategory.HOUSING, [Recipient.of_partner(PARTNER), Recipient.of_partner(uuid7()),
                                                     division("housing")])
    case_id = await a_consultation(uow, "housing")
    consent_given = consent_to(case_id, "housing_support")
    await consent.on_consent_granted(uow, consent_given, policy=POLICY)
    await do(uow, referral_of(uow, case_id, NeedCategory.HOUSING).referral_id, Action.ACCEPT)

    await consent.on_consent_withdrawn(uow, withdrawal_of(consent_given), policy=POLICY)

    assert asked(uow, case_id, NeedCategory.HOUSING) == [
        (Recipient.of_partner(PARTNER), Status.WITHDRAWN), (division("housing"), Status.REQUESTED)], \
        "the next partner would need a consent of its own: a division is asked"
    [rerouted] = uow.of(ReferralRerouted)
    assert (rerouted.reason, rerouted.new_recipient) == (RerouteReason.CONSENT_WITHDRAWN, division("housing"))
    assert Status.WITHDRAWN.label_ja.startswith("取り下げ")


async def test_a_referral_another_consent_or_an_active_statutory_basis_still_covers_stays_with_the_partner(uow):
    case_id, referral_id = await a_partner_referral(uow)
    to_refer, to_house = consent_to(case_id, "referral"), consent_to(case_id, "housing_support")
    for given in (to_refer, to_house):
        await consent.on_consent_granted(uow, given, policy=POLICY)
    await consent.on_basis_recorded(uow, event(
        StatutoryBasisRecorded, case_id=str(case_id), basis_id=str(uuid7()), purpose="referral",
        recipient={"kind": "partner", "partner_id": str(PARTNER)}), policy=POLICY)

    await consent.on_consent_withdrawn(uow, withdrawal_of(to_refer), policy=POLICY)
    await consent.on_consent_withdrawn(uow, withdrawal_of(to_house), policy=POLICY)

    assert (await uow.repo.referral(referral_id)).status is Status.REQUESTED, "the 支援会議 still covers it"
    assert not uow.of(ReferralRerouted)


async def test_a_withdrawn_consent_for_a_purpose_the_referral_does_not_rest_on_changes_nothing(uow):
    case_id, referral_id = await a_partner_referral(uow)
    check_ins = consent_to(case_id, "check_in")
    await consent.on_consent_granted(uow, check_ins, policy=POLICY)

    await consent.on_consent_withdrawn(uow, withdrawal_of(check_ins), policy=POLICY)

    assert (await uow.repo.referral(referral_id)).status is Status.REQUESTED


async def test_an_ended_statutory_basis_works_like_a_withdrawal_and_says_so(uow):
    case_id, referral_id = await a_partner_referral(uow)
    grant = {"case_id": str(case_id), "basis_id": str(uuid7()), "purpose": "housing_support",
             "recipient": {"kind": "partner", "partner_id": str(PARTNER)}}
    await consent.on_basis_recorded(uow, event(StatutoryBasisRecorded, **grant), policy=POLICY)

    await consent.on_basis_ended(uow, event(StatutoryBasisEnded, **grant), policy=POLICY)

    assert (await uow.repo.referral(referral_id)).status is Status.WITHDRAWN
    assert uow.of(ReferralRerouted)[0].reason is RerouteReason.STATUTORY_BASIS_ENDED


async def test_a_withdrawal_reaches_no_referral_of_a_closed_case_nor_one_already_over(uow):
    case_id, referral_id = await a_partner_referral(uow)
    given = consent_to(case_id, "housing_support")
    await consent.on_consent_granted(uow, given, policy=POLICY)
    await do(uow, referral_id, Action.DECLINE, Detail(reason=DeclineReason.CAPACITY_FULL))
    emitted = len(uow.events)

    await consent.on_consent_withdrawn(uow, withdrawal_of(given), policy=POLICY)

    assert len(uow.events) == emitted and (await uow.repo.referral(referral_id)).status is Status.DECLINED


# follow-ups -----------------------------------------------------------------------------------------

FOLLOW_UP_POLICY = Policy(follow_up_business_days=dict.fromkeys(NeedCategory, 2), follow_up_answer_business_days=1)


async def an_accepted_referral(uow, need: str = "health") -> tuple[UUID, UUID]:
    case_id = await a_consultation(uow, need)
    referral_id = referral_of(uow, case_id, NeedCategory(need)).referral_id
    await referrals.act(uow, referral_id, Action.ACCEPT, Detail(), now=NOW, policy=FOLLOW_UP_POLICY)
    return case_id, referral_id


async def test_a_follow_up_falls_due_n_business_days_after_acceptance_for_the_counter_that_registered_the_case(
        uow):
    case_id, referral_id = await an_accepted_referral(uow)  # accepted on Friday 27 November 2026
    follow_up = await uow.repo.follow_up_of(referral_id)

    early = await follow_ups.open_due_follow_ups(uow, now=NOW + timedelta(days=3))  # Monday: one business day
    due = await follow_ups.open_due_follow_ups(uow, now=NOW + timedelta(days=4))    # Tuesday: the second
    again = await follow_ups.open_due_follow_ups(uow, now=NOW + timedelta(days=5))

    assert (early, due, again) == (0, 1, 0)
    [told] = uow.of(FollowUpDue)
    assert (told.follow_up_id, told.counter, told.due_on.isoformat()) == (follow_up.follow_up_id, Division.TAX,
                                                                         "2026-12-01")
    assert told.addressees() == (division("tax"),), "the counter that registered the case asks the person"


async def test_completing_a_referral_moves_its_follow_up_not_yet_due_and_a_reroute_cancels_it(uow):
    case_id, referral_id = await an_accepted_referral(uow)
    later = NOW + timedelta(days=7)
    await referrals.act(uow, referral_id, Action.COMPLETE, Detail(outcome=ReferralOutcome.SUPPORTED), now=later,
                        policy=FOLLOW_UP_POLICY)
    other_case, other_referral = await an_accepted_referral(uow, "debt")
    await referrals.act(uow, other_referral, Action.REROUTE, Detail(recipient=Recipient.of_partner(PARTNER)),
                        now=NOW, policy=FOLLOW_UP_POLICY)

    assert (await uow.repo.follow_up_of(referral_id)).due_on.isoformat() == "2026-12-08"
    assert await uow.repo.follow_up_of(other_referral) is None


async def answer(uow, follow_up_id, outcome: FollowUpOutcome):
    return await follow_ups.answer_follow_up(uow, follow_up_id, outcome, staff="counter-staff",
                                             now=NOW + timedelta(days=5), policy=FOLLOW_UP_POLICY)


async def test_not_helped_reopens_the_need_for_the_coordinator_and_a_second_answer_is_a_conflict(uow):
    case_id, referral_id = await an_accepted_referral(uow)
    await follow_ups.open_due_follow_ups(uow, now=NOW + timedelta(days=4))
    follow_up = await uow.repo.follow_up_of(referral_id)

    answered = await answer(uow, follow_up.follow_up_id, FollowUpOutcome.REACHED_NOT_HELPED)
    with pytest.raises(Rejected) as twice:
        await answer(uow, follow_up.follow_up_id, FollowUpOutcome.REACHED_HELPED)

    [told] = uow.of(FollowUpAnswered)
    reopened = await uow.repo.referral(told.reopened_referral_id)
    assert (told.outcome, answered.outcome) == (FollowUpOutcome.REACHED_NOT_HELPED,) * 2
    assert (reopened.recipient, reopened.need, reopened.status) == (FALLBACK, NeedCategory.HEALTH, Status.REQUESTED)
    assert twice.value.why is Why.CONFLICT and len(uow.of(FollowUpAnswered)) == 1


async def test_helped_or_unreachable_reopens_nothing_and_a_follow_up_not_yet_due_cannot_be_answered(uow):
    _, helped = await an_accepted_referral(uow)
    _, not_due = await an_accepted_referral(uow, "debt")
    await follow_ups.open_due_follow_ups(uow, now=NOW + timedelta(days=4))
    uow.repo.follow_ups_by_referral[not_due] = replace(uow.repo.follow_ups_by_referral[not_due], opened_at=None)
    requested = len(uow.of(ReferralRequested))

    await answer(uow, (await uow.repo.follow_up_of(helped)).follow_up_id, FollowUpOutcome.REACHED_HELPED)
    with pytest.raises(Rejected) as early:
        await answer(uow, (await uow.repo.follow_up_of(not_due)).follow_up_id, FollowUpOutcome.COULD_NOT_REACH)

    assert len(uow.of(ReferralRequested)) == requested and uow.of(FollowUpAnswered)[0].reopened_referral_id is None
    assert early.value.why is Why.CONFLICT and "まだ回答できません" in early.value.message_ja

