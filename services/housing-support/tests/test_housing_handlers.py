"""The council's rules, on in-memory fakes: who leads, which moves are legal, what a death asks for,
when a check-in is answered, missed or escalated."""

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from tsunagu_contracts import (
    CheckInEscalated, CheckInMissed, CheckInRecorded, EstateClearanceRequested, HousingSupportOpened, Recipient,
    ReferralRequested, ReferralSheetOpened, TenancyEnded, TenancyStageChanged, TenancyStarted, uuid7,
)
from tsunagu_contracts.codes import CheckInKind, CheckInResult, Division, HousingRole, TenancyStage
from tsunagu_contracts.japan import JST
from tsunagu_housing.domain.commands import MoveStage, OpenSupport, RecordCheckIn, RegisterMember
from tsunagu_servicehost.errors import Rejected, Why
from tsunagu_housing.domain.model import Actor
from tsunagu_housing.domain.schedule import CheckInRule, InvalidSchedule, parse
from tsunagu_housing.handlers import check_ins, members, supports

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=JST)
COUNCIL = Actor("council-staff", "council")
HOME = {"landlord": "ざま不動産", "address": "座間市1-1", "moved_in_on": "2026-12-01"}


async def a_case(uow, *needs: str) -> UUID:
    case_id, sheet = uuid7(), uuid7()
    await supports.on_sheet_opened(uow, ReferralSheetOpened(
        case_id=case_id, municipality_code="142166", occurred_at=NOW, sheet_id=sheet, person_ref=uuid7(),
        needs=needs or ("housing",), primary_need=(needs or ("housing",))[0], urgency="high"))
    return case_id


def housing_referral(case_id: UUID, need: str = "housing") -> ReferralRequested:
    return ReferralRequested(case_id=case_id, municipality_code="142166", occurred_at=NOW, referral_id=uuid7(),
                             recipient=Recipient.of_division(Division.HOUSING), sheet_id=uuid7(), need=need,
                             urgency="high", accept_by=NOW + timedelta(days=3), candidate_rank=1)


async def a_member(uow, *roles: str, partner: bool = True, at: datetime = NOW):
    body = ({"kind": "partner", "partner_id": str(uuid7())} if partner else {"kind": "division", "division": "housing"})
    return await members.register_member(uow, RegisterMember(name="構成員", takes_on=list(roles), **body), now=at)


async def walk(uow, support_id, sealer, *stages: tuple[str, dict]):
    for stage, body in stages:
        await supports.move_stage(uow, support_id, MoveStage(to_stage=stage, **body), by=COUNCIL, now=NOW,
                                  sealer=sealer, default_every_days=14)


async def test_a_housing_referral_opens_one_support_led_by_the_least_loaded_house_hunting_member(uow):
    busy = await a_member(uow, "house_hunting", at=NOW - timedelta(days=2))
    idle = await a_member(uow, "house_hunting", at=NOW - timedelta(days=1))
    await a_member(uow, "estate_clearance")
    first, second = await a_case(uow), await a_case(uow)
    await supports.on_referral_requested(uow, housing_referral(first))
    await supports.on_referral_requested(uow, housing_referral(second))

    leads = [e.responsible_member_id for e in uow.of(HousingSupportOpened)]
    assert leads == [busy.member_id, idle.member_id], "the tie goes to the longest registered, then the idle one"
    assert uow.of(HousingSupportOpened)[1].responsible == idle.recipient


async def test_another_housing_referral_for_the_same_case_opens_nothing_twice_and_other_needs_open_nothing(uow):
    await a_member(uow, "house_hunting")
    case = await a_case(uow)
    await supports.on_referral_requested(uow, housing_referral(case, need="debt"))
    first, rerouted = housing_referral(case), housing_referral(case)
    await supports.on_referral_requested(uow, first)
    await supports.on_referral_requested(uow, rerouted)

    assert len(uow.of(HousingSupportOpened)) == 1
    support = await uow.repo.open_support_of_case(case)
    assert support.referral_id == rerouted.referral_id, "the support under way takes on the newer referral"


async def test_a_housing_referral_for_a_case_never_announced_is_refused_so_it_is_retried_then_dead_lettered(uow):
    await a_member(uow, "house_hunting")
    with pytest.raises(supports.CaseUnknown):
        await supports.on_referral_requested(uow, housing_referral(uuid7()))


async def test_opening_by_hand_refuses_a_case_with_a_support_under_way(uow):
    await a_member(uow, "house_hunting")
    case = await a_case(uow, "debt")
    await supports.open_by_hand(uow, OpenSupport(case_id=case), by=COUNCIL, now=NOW)
    with pytest.raises(Rejected) as refused:
        await supports.open_by_hand(uow, OpenSupport(case_id=case), by=COUNCIL, now=NOW)
    assert refused.value.why is Why.CONFLICT


async def test_an_illegal_move_is_refused_with_the_stages_that_may_follow(uow, sealer):
    await a_member(uow, "house_hunting")
    support = await supports.open_by_hand(uow, OpenSupport(case_id=await a_case(uow)), by=COUNCIL, now=NOW)
    with pytest.raises(Rejected) as refused:
        await walk(uow, support.support_id, sealer, ("contract", {}))
    assert refused.value.details["allowed_next"] == [{"stage": "application", "label_ja": "入居申込・審査"},
                                                     {"stage": "ended", "label_ja": "終了"}]
    assert "住まい探し" in refused.value.message_ja and len(uow.of(TenancyStageChanged)) == 0


async def test_moving_in_starts_the_tenancy_with_a_default_visit_schedule_and_a_death_asks_a_partner_to_clear(
        uow, sealer):
    await a_member(uow, "house_hunting", partner=False)
    clearer = await a_member(uow, "estate_clearance")
    support = await supports.open_by_hand(uow, OpenSupport(case_id=await a_case(uow)), by=COUNCIL, now=NOW)
    await walk(uow, support.support_id, sealer, ("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME}),
               ("ended", {"end_reason": "died"}))

    started, = uow.of(TenancyStarted)
    ended, = uow.of(TenancyEnded)
    clearance, = uow.of(EstateClearanceRequested)
    assert started.check_in_every_days == 14 and ended.reason == "died"
    assert clearance.partner_id == clearer.partner_id and clearance.addressees() == (clearer.recipient,)
    assert uow.of(TenancyStageChanged)[-1].end_reason == "died"
    assert all(r.due_at is None for r in await uow.repo.rules(support.support_id)), "check-ins stop"


async def test_without_a_partner_for_estate_clearance_the_lead_gets_the_task(uow, sealer):
    lead = await a_member(uow, "house_hunting", partner=False)
    support = await supports.open_by_hand(uow, OpenSupport(case_id=await a_case(uow)), by=COUNCIL, now=NOW)
    await walk(uow, support.support_id, sealer, ("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME}),
               ("ended", {"end_reason": "died"}))
    assert not uow.of(EstateClearanceRequested)
    assert [(t["member_id"], t["kind"]) for t in uow.repo.tasks.values()] == [(lead.member_id,
                                                                                HousingRole.ESTATE_CLEARANCE)]


async def tenancy_with(uow, sealer, rrule: str, grace_minutes: int = 60):
    lead = await a_member(uow, "house_hunting")
    support = await supports.open_by_hand(uow, OpenSupport(case_id=await a_case(uow)), by=COUNCIL, now=NOW)
    await walk(uow, support.support_id, sealer, ("application", {}), ("contract", {}), ("move_in", {
        "tenancy": HOME, "check_in_schedule": {"rules": [
            {"kind": "safety_contact", "rrule": rrule, "grace_minutes": grace_minutes}]}}))
    return support, lead


DAILY = "DTSTART;TZID=Asia/Tokyo:20261201T100000\nRRULE:FREQ=DAILY"


async def test_a_check_in_in_its_window_answers_the_occurrence_and_nothing_is_missed(uow, sealer):
    support, lead = await tenancy_with(uow, sealer, DAILY)
    await check_ins.record_check_in(uow, support.support_id, RecordCheckIn(
        kind="safety_contact", result="well", member_id=lead.member_id, at=NOW + timedelta(minutes=30)),
        by=COUNCIL, now=NOW + timedelta(hours=1))
    reported = await check_ins.report_missed(uow, now=datetime(2026, 12, 1, 12, 0, tzinfo=JST))

    recorded, = uow.of(CheckInRecorded)
    assert recorded.scheduled_for == date(2026, 12, 1) and reported == 0
    rule, = await uow.repo.rules(support.support_id)
    assert rule.due_at == datetime(2026, 12, 2, 10, 0, tzinfo=JST)


async def test_days_of_missed_check_ins_are_reported_once_to_the_lead_with_how_many(uow, sealer):
    support, lead = await tenancy_with(uow, sealer, DAILY)
    after_four_days = datetime(2026, 12, 4, 12, 0, tzinfo=JST)
    first = await check_ins.report_missed(uow, now=after_four_days)
    again = await check_ins.report_missed(uow, now=after_four_days + timedelta(minutes=1))

    missed, = uow.of(CheckInMissed)
    assert (first, again) == (1, 0)
    assert missed.missed_occurrences == 4 and missed.scheduled_for == date(2026, 12, 4)
    assert missed.responsible_member_id == lead.member_id and missed.addressees() == (lead.recipient,)


async def test_a_second_absence_in_a_row_or_an_emergency_escalates_at_once(uow, sealer):
    support, lead = await tenancy_with(uow, sealer, DAILY)

    async def check(result: str, minutes: int):
        await check_ins.record_check_in(uow, support.support_id, RecordCheckIn(
            kind="visit", result=result, member_id=lead.member_id, at=NOW + timedelta(minutes=minutes)),
            by=COUNCIL, now=NOW + timedelta(minutes=minutes))

    await check("not_at_home", 1)
    assert not uow.of(CheckInEscalated)
    await check("not_at_home", 2)
    await check("well", 3)
    await check("emergency", 4)
    assert [e.reason for e in uow.of(CheckInEscalated)] == ["not_at_home_twice", "emergency"]


async def test_a_partner_member_cannot_record_as_another_member_nor_see_a_support_it_is_not_on(uow, sealer):
    support, lead = await tenancy_with(uow, sealer, DAILY)
    stranger = await a_member(uow, "check_ins")
    with pytest.raises(Rejected) as hidden:
        await check_ins.record_check_in(uow, support.support_id, RecordCheckIn(
            kind="visit", result="well", member_id=stranger.member_id), by=Actor("p", "partner", stranger.partner_id),
            now=NOW)
    with pytest.raises(Rejected) as impersonating:
        await check_ins.record_check_in(uow, support.support_id, RecordCheckIn(
            kind="visit", result="well", member_id=stranger.member_id), by=Actor("p", "partner", lead.partner_id),
            now=NOW)
    assert hidden.value.why is Why.NOT_FOUND and impersonating.value.why is Why.FORBIDDEN


def test_a_schedule_is_evaluated_in_japan_time_and_bad_rules_are_refused_in_both_languages():
    rule = CheckInRule(CheckInKind.SAFETY_CONTACT, "DTSTART:20261201T100000\nRRULE:FREQ=DAILY", timedelta(0))
    assert rule.first_due(datetime(2026, 12, 1, 0, 30, tzinfo=UTC)) == datetime(2026, 12, 1, 10, 0, tzinfo=JST)
    monthly = CheckInRule(CheckInKind.VISIT, "DTSTART;TZID=Asia/Tokyo:20261210T140000\nRRULE:FREQ=MONTHLY",
                          timedelta(days=1))
    assert monthly.answers(datetime(2027, 1, 10, 14, 0, tzinfo=JST), datetime(2027, 1, 3, 9, 0, tzinfo=JST))
    assert not monthly.answers(datetime(2027, 1, 10, 14, 0, tzinfo=JST), datetime(2026, 12, 20, 9, 0, tzinfo=JST))
    for bad in ("RRULE:FREQ=DAILY", "DTSTART;TZID=Europe/Paris:20261201T100000\nRRULE:FREQ=DAILY",
                "DTSTART:20261201T100000\nRRULE:FREQ=SOMETIMES"):
        with pytest.raises(InvalidSchedule) as refused:
            parse(bad)
        assert refused.value.message_ja


def test_a_stage_move_must_say_why_it_ends_and_bring_the_home_when_moving_in():
    with pytest.raises(ValueError):
        MoveStage(to_stage=TenancyStage.ENDED)
    with pytest.raises(ValueError):
        MoveStage(to_stage=TenancyStage.MOVE_IN)
    assert CheckInResult.NOT_AT_HOME.label_ja == "不在"
