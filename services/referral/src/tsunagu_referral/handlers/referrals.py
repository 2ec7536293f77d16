"""Opening sheets, asking recipients, and moving referrals through their states.

Every function runs in the caller's unit of work: its changes and the events they cause commit
together, or not at all. A move that does not fit raises `Rejected` before it changes anything.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ConsultationRegistered, NeedIdentified, Recipient, ReferralAccepted, ReferralCompleted,
    ReferralContactMade, ReferralDeclined, ReferralRequested, ReferralRerouted, ReferralSheetOpened, uuid7,
)
from tsunagu_contracts.codes import CaseClosureReason, NeedCategory, RerouteReason, Urgency
from tsunagu_referral.domain.deadlines import accept_deadline, follow_up_answer_by, follow_up_due_on
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.model import Detail, FollowUp, Policy, Referral, Sheet
from tsunagu_referral.domain.referral import Action, IllegalTransition, Status, next_status
from tsunagu_referral.domain.routing import next_candidate
from tsunagu_referral.handlers.timers import COORDINATOR

CASE_CLOSED = ("この相談は終了しています。", "the case is closed")
MOVED_ON = {Action.DECLINE: RerouteReason.DECLINED, Action.MARK_UNREACHABLE: RerouteReason.PARTNER_UNREACHABLE}


async def candidate_for(uow, case_id: UUID, need: NeedCategory, *, divisions_only: bool = False,
                        new_sheet: bool = False) -> tuple[int, Recipient] | None:
    """The next recipient to ask for `need`; `new_sheet`: nobody was asked on the case yet (its sheet
    was opened in this unit of work, and a referral cannot exist without its case's sheet)."""
    asked = [] if new_sheet else await uow.repo.asked(case_id, need)
    return next_candidate(await uow.repo.routes(need), asked, divisions_only=divisions_only)


async def request(uow, sheet: Sheet, need: NeedCategory, rank: int, recipient: Recipient, urgency: Urgency, *,
                  now: datetime, policy: Policy) -> ReferralRequested:
    """Ask one recipient; the caller holds the sheet's lock."""
    accept_by = accept_deadline(now, policy.accept_business_days)
    referral = Referral(uuid7(), sheet.case_id, sheet.sheet_id, need, recipient, rank, Status.REQUESTED, urgency,
                        accept_by, requested_at=now, updated_at=now)
    await uow.repo.add_referral(referral)
    return ReferralRequested(case_id=sheet.case_id, municipality_code=sheet.municipality_code, occurred_at=now,
                             referral_id=referral.referral_id, recipient=recipient, sheet_id=sheet.sheet_id,
                             need=need, urgency=urgency, accept_by=accept_by, candidate_rank=rank)


async def refer_needs(uow, sheet: Sheet, needs: list[NeedCategory], urgency: Urgency, *, now: datetime,
                      policy: Policy, new_sheet: bool = False) -> list[ReferralRequested]:
    """One referral per need that has no active referral on the case yet. `new_sheet`: the sheet was
    opened in this unit of work, so the case has no referral at all (each references its case's sheet)
    and nothing needs to be read to know it."""
    active = set() if new_sheet else await uow.repo.active_needs(sheet.case_id)
    events = []
    for need in needs:
        if need in active:
            continue
        candidate = await candidate_for(uow, sheet.case_id, need, new_sheet=new_sheet)
        if candidate:
            events.append(await request(uow, sheet, need, *candidate, urgency, now=now, policy=policy))
    return events


async def on_consultation_registered(uow, e: ConsultationRegistered, *, policy: Policy) -> None:
    """A consultation becomes (or joins) the case's つなぐシート, and each need is referred."""
    now = e.occurred_at
    sheet = await uow.repo.sheet(e.case_id, lock=True)
    new_sheet = sheet is None
    if new_sheet:
        sheet = await uow.repo.open_sheet(Sheet(uuid7(), e.case_id, e.person_ref, e.municipality_code,
                                                [n.value for n in e.needs], e.primary_need, e.urgency, now,
                                                counter=e.counter))
        uow.emit(ReferralSheetOpened(case_id=e.case_id, municipality_code=e.municipality_code, occurred_at=now,
                                     sheet_id=sheet.sheet_id, person_ref=e.person_ref, needs=e.needs,
                                     primary_need=e.primary_need, urgency=e.urgency))
    else:
        if sheet.closed:
            # Intake registered this before it heard the case was closed: the person is back, so
            # the case opens again rather than leaving the consultation with nowhere to go.
            uow.emit(CaseReopened(case_id=e.case_id, municipality_code=e.municipality_code, occurred_at=now,
                                  consultation_id=e.consultation_id))
        sheet = await uow.repo.add_needs(e.case_id, list(e.needs), reopen=True)
    # The most pressing need is asked first.
    ordered = [e.primary_need, *[n for n in e.needs if n != e.primary_need]]
    uow.emit(*await refer_needs(uow, sheet, ordered, e.urgency, now=now, policy=policy, new_sheet=new_sheet))


async def on_need_identified(uow, e: NeedIdentified, *, policy: Policy) -> None:
    sheet = await uow.repo.sheet(e.case_id, lock=True)
    if sheet is None or sheet.closed:
        return  # the consultation that opens the sheet comes first on the same partition
    await uow.repo.add_needs(e.case_id, [e.need])
    uow.emit(*await refer_needs(uow, sheet, [e.need], sheet.urgency, now=e.occurred_at, policy=policy))


async def act(uow, referral_id: UUID, action: Action, detail: Detail, *, now: datetime, policy: Policy,
              recipient_must_be: Recipient | None = None) -> Referral:
    """Apply one action to a referral and return it as it now is; one that does not fit raises
    `Rejected` and changes nothing."""
    # The sheet is locked too: actions on one case, and closing it, happen one after another, so
    # their events reach the outbox (and Kafka) in the order they were decided.
    found = await uow.repo.referral_for_action(referral_id)
    if found is None:
        raise Rejected.not_found("紹介", "referral")
    referral, sheet = found
    if recipient_must_be is not None and referral.recipient != recipient_must_be:
        raise Rejected.forbidden("この紹介はあなた宛てではありません。", "this referral is addressed to another recipient")
    if sheet.closed:
        raise Rejected.conflict(*CASE_CLOSED)
    try:
        status = next_status(referral.status, action)
    except IllegalTransition as exc:
        raise Rejected.conflict(f"「{referral.status.label_ja}」の紹介にはこの操作はできません。", str(exc)) from None

    base = {"case_id": referral.case_id, "municipality_code": sheet.municipality_code, "occurred_at": now,
            "referral_id": referral_id, "recipient": referral.recipient}
    events: list = []
    if action is Action.ACCEPT:
        events.append(ReferralAccepted(**base))
    elif action is Action.DECLINE:
        events.append(ReferralDeclined(**base, reason=detail.reason))
    elif action is Action.CONTACT:
        events.append(ReferralContactMade(**base, method=detail.method))
        await uow.repo.record_contact(referral.case_id, now)
    elif action is Action.COMPLETE:
        events.append(ReferralCompleted(**base, outcome=detail.outcome))
    await uow.repo.update_referral(referral_id, status, detail, at=now)
    if action in (Action.ACCEPT, Action.COMPLETE):
        await schedule_follow_up(uow, referral, sheet, now=now, policy=policy)
    elif not status.active:
        await uow.repo.cancel_follow_up(referral_id)

    if action in (Action.DECLINE, Action.REROUTE, Action.MARK_UNREACHABLE, Action.WITHDRAW):
        if action is Action.REROUTE:
            candidate = (referral.candidate_rank, detail.recipient)
            why = RerouteReason.STAFF_DECISION
        else:
            # A referral withdrawn with the partner's consent goes to a division, which needs none.
            candidate = await candidate_for(uow, referral.case_id, referral.need,
                                            divisions_only=action is Action.WITHDRAW)
            why = detail.why if action is Action.WITHDRAW else MOVED_ON[action]
        if candidate:
            requested = await request(uow, sheet, referral.need, *candidate, referral.urgency, now=now,
                                      policy=policy)
            events += [ReferralRerouted(**base, new_referral_id=requested.referral_id,
                                        new_recipient=requested.recipient, reason=why), requested]
    uow.emit(*events)
    return await uow.repo.referral(referral_id)


async def schedule_follow_up(uow, referral: Referral, sheet: Sheet, *, now: datetime, policy: Policy) -> None:
    """N business days (per need) after a referral is accepted, or completed, the counter that
    registered the case asks the person whether the help arrived; completing moves a follow-up not
    yet due to N business days after the completion."""
    due_on = follow_up_due_on(now, policy.follow_up_business_days[referral.need])
    await uow.repo.schedule_follow_up(FollowUp(
        # A sheet opened before the counter was kept: the coordinator asks.
        uuid7(), referral.referral_id, referral.case_id, referral.need, sheet.counter or COORDINATOR, due_on,
        follow_up_answer_by(due_on, policy.follow_up_answer_business_days)))


async def add_referral(uow, case_id: UUID, need: NeedCategory, recipient: Recipient | None, *, now: datetime,
                       policy: Policy) -> Referral:
    sheet = await uow.repo.sheet(case_id, lock=True)
    if sheet is None:
        raise Rejected.not_found("つなぐシート", "referral sheet")
    if sheet.closed:
        raise Rejected.conflict(*CASE_CLOSED)
    if recipient is not None:
        candidate = (await uow.repo.next_rank(case_id, need), recipient)
    else:
        candidate = await candidate_for(uow, case_id, need)
    if candidate is None:
        raise Rejected.conflict("この課題の紹介先候補はすべて依頼済みです。", "every candidate for this need was asked")
    requested = await request(uow, sheet, need, *candidate, sheet.urgency, now=now, policy=policy)
    uow.emit(requested)
    return await uow.repo.referral(requested.referral_id)


async def close_case(uow, case_id: UUID, reason: CaseClosureReason, *, now: datetime) -> None:
    sheet = await uow.repo.sheet(case_id, lock=True)
    if sheet is None:
        raise Rejected.not_found("つなぐシート", "referral sheet")
    if sheet.closed:
        raise Rejected.conflict("この相談はすでに終了しています。", "the case is already closed")
    await uow.repo.close_sheet(case_id, reason, at=now)
    uow.emit(CaseClosed(case_id=case_id, municipality_code=sheet.municipality_code, occurred_at=now, reason=reason))
