"""Opening supports, walking their stages to the end, leads and tasks.

Every function runs in the caller's unit of work: its changes and the events they cause commit
together, or not at all.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import (
    EstateClearanceRequested, HousingSupportOpened, NeedCategory, ReferralRequested, ReferralSheetOpened, TenancyEnded,
    TenancyStageChanged, TenancyStarted, uuid7,
)
from tsunagu_contracts.codes import HousingRole, TenancyEndReason, TenancyStage
from tsunagu_contracts.japan import japan_date
from tsunagu_housing.adapters.sealing import Sealer
from tsunagu_housing.domain.commands import AssignTask, MoveStage, OpenSupport
from tsunagu_servicehost.errors import Rejected
from tsunagu_housing.domain.members import Member, choose_lead
from tsunagu_housing.domain.model import Actor, Case, Support, Tenancy
from tsunagu_housing.domain.stages import IllegalMove, check_move
from tsunagu_housing.handlers.access import support_for
from tsunagu_housing.handlers.check_ins import schedule_rules

log = logging.getLogger("tsunagu.housing")
REFERRAL = Actor("referral", "service")


async def on_sheet_opened(uow, e: ReferralSheetOpened) -> None:
    await uow.repo.remember_case(Case(e.case_id, e.person_ref, e.municipality_code))


class CaseUnknown(Exception):
    """A housing referral for a case whose sheet was never announced: retried, then dead-lettered."""


async def on_referral_requested(uow, e: ReferralRequested) -> None:
    """A referral for the housing need opens a support, once per case however often it is asked."""
    if e.need is not NeedCategory.HOUSING:
        return
    case = await uow.repo.case(e.case_id)
    if case is None:
        raise CaseUnknown(f"case {e.case_id} has no referral sheet here")
    opened = await open_support(uow, case, referral_id=e.referral_id, referred_at=e.occurred_at, lead=None,
                                by=REFERRAL, now=e.occurred_at)
    if opened is None:
        # Asked again (declined and rerouted, added by hand, or opened by hand meanwhile): the
        # support under way takes the newer referral on.
        under_way = await uow.repo.open_support_of_case(e.case_id, lock=True)
        await uow.repo.link_referral(under_way.support_id, e.referral_id)


async def open_by_hand(uow, cmd: OpenSupport, *, by: Actor, now: datetime) -> Support:
    case = await uow.repo.case(cmd.case_id)
    if case is None:
        raise Rejected.not_found("この相談（つなぐシート）", "case with a referral sheet")
    lead = None
    if cmd.lead_member_id is not None:
        lead = await uow.repo.member(cmd.lead_member_id)
        if lead is None:
            raise Rejected.invalid("lead_member_id", "協議会の構成員が見つかりません。", "no such council member")
    support = await open_support(uow, case, referral_id=None, referred_at=None, lead=lead, by=by, now=now)
    if support is None:
        raise Rejected.conflict("この相談にはすでに進行中の居住支援があります。", "the case already has a support under way")
    return support


async def open_support(uow, case: Case, *, referral_id: UUID | None, referred_at: datetime | None,
                       lead: Member | None, by: Actor, now: datetime) -> Support | None:
    """Open a support with a lead; None when the case already has one under way."""
    if lead is None:
        lead = choose_lead(await uow.repo.members_taking_on(HousingRole.HOUSE_HUNTING),
                           await uow.repo.open_supports_by_lead())
    if lead is None:
        raise Rejected.conflict("住まい探しを担う構成員がいません。", "no council member takes on house-hunting")
    support = Support(uuid7(), case.case_id, case.person_ref, case.municipality_code, referral_id, referred_at,
                      TenancyStage.HOUSE_HUNTING, now, lead.member_id, now)
    if not await uow.repo.insert_support(support, opened_by=by.subject):
        return None
    await uow.repo.record_stage(support.support_id, None, support.stage, at=now, by=by.subject)
    uow.emit(HousingSupportOpened(
        case_id=case.case_id, municipality_code=case.municipality_code, occurred_at=now,
        support_id=support.support_id, person_ref=case.person_ref, referral_id=referral_id, stage=support.stage,
        responsible_member_id=lead.member_id, responsible=lead.recipient))
    return support


async def move_stage(uow, support_id: UUID, cmd: MoveStage, *, by: Actor, now: datetime, sealer: Sealer,
                     default_every_days: int) -> Support:
    support = await support_for(uow, support_id, by, lock=True)
    try:
        check_move(support.stage, cmd.to_stage)
    except IllegalMove as illegal:
        raise Rejected.conflict(illegal.message_ja, str(illegal), allowed_next=[
            {"stage": s.value, "label_ja": s.label_ja} for s in illegal.allowed]) from None
    base = {"case_id": support.case_id, "municipality_code": support.municipality_code, "occurred_at": now,
            "support_id": support_id}
    reason = sealer.seal({"reason": cmd.reason}) if cmd.reason else None
    await uow.repo.move(support, cmd.to_stage, at=now, by=by.subject, reason=reason,
                        end_reason=cmd.end_reason.value if cmd.end_reason else None)
    uow.emit(TenancyStageChanged(**base, from_stage=support.stage, to_stage=cmd.to_stage, end_reason=cmd.end_reason))
    if cmd.to_stage is TenancyStage.MOVE_IN:
        tenancy = Tenancy(uuid7(), support_id, cmd.tenancy.moved_in_on, None)
        await uow.repo.add_tenancy(tenancy, sealer.seal(cmd.tenancy.model_dump(mode="json")))
        every = await schedule_rules(uow, support_id, cmd.check_in_schedule, moved_in_on=tenancy.moved_in_on,
                                     now=now, default_every_days=default_every_days)
        uow.emit(TenancyStarted(**base, tenancy_id=tenancy.tenancy_id, moved_in_on=tenancy.moved_in_on,
                                check_in_every_days=every))
    if cmd.to_stage is TenancyStage.ENDED:
        await end(uow, support, cmd.end_reason, ended_on=cmd.ended_on or japan_date(now), by=by, now=now, base=base)
    return await uow.repo.support(support_id)


async def end(uow, support: Support, reason: TenancyEndReason, *, ended_on, by: Actor, now: datetime,
              base: dict) -> None:
    """Check-ins stop; a tenancy ends; after a death the home is cleared by a member who takes it on."""
    await uow.repo.stop_rules(support.support_id)
    tenancy = await uow.repo.tenancy(support.support_id)
    if tenancy is None or tenancy.ended_on is not None:
        return
    await uow.repo.end_tenancy(tenancy.tenancy_id, ended_on, reason.value)
    uow.emit(TenancyEnded(**base, tenancy_id=tenancy.tenancy_id, ended_on=ended_on, reason=reason))
    if reason is TenancyEndReason.DIED:
        await request_estate_clearance(uow, support, tenancy, by=by, now=now, base=base)


async def request_estate_clearance(uow, support: Support, tenancy: Tenancy, *, by: Actor, now: datetime,
                                   base: dict) -> None:
    """A partner that takes on estate clearance (the least busy with it) is asked; without one, the
    lead member gets the task, so the home is never left as it was."""
    members = await uow.repo.members_taking_on(HousingRole.ESTATE_CLEARANCE)
    partners = [m for m in members if m.partner_id is not None]
    chosen = choose_lead(partners, await uow.repo.open_tasks_by_member(HousingRole.ESTATE_CLEARANCE))
    await uow.repo.add_task(uuid7(), support.support_id, chosen.member_id if chosen else support.lead_member_id,
                            HousingRole.ESTATE_CLEARANCE, due_on=None, at=now, by=by.subject)
    if chosen is not None:
        uow.emit(EstateClearanceRequested(**base, tenancy_id=tenancy.tenancy_id, partner_id=chosen.partner_id))
    else:
        log.warning("support %s: no partner takes on estate clearance; the task went to the lead member",
                    support.support_id)


async def set_lead(uow, support_id: UUID, member_id: UUID, *, by: Actor) -> Support:
    support = await support_for(uow, support_id, by, lock=True)
    if support.stage is TenancyStage.ENDED:
        raise Rejected.conflict("この支援は終了しています。", "the support has ended")
    if await uow.repo.member(member_id) is None:
        raise Rejected.invalid("member_id", "協議会の構成員が見つかりません。", "no such council member")
    await uow.repo.set_lead(support_id, member_id)
    return await uow.repo.support(support_id)


async def assign_task(uow, support_id: UUID, cmd: AssignTask, *, by: Actor, now: datetime) -> UUID:
    support = await support_for(uow, support_id, by, lock=True)
    if support.stage is TenancyStage.ENDED and cmd.kind is not HousingRole.ESTATE_CLEARANCE:
        raise Rejected.conflict("この支援は終了しています。", "the support has ended")
    member = await uow.repo.member(cmd.member_id)
    if member is None:
        raise Rejected.invalid("member_id", "協議会の構成員が見つかりません。", "no such council member")
    task_id = uuid7()
    await uow.repo.add_task(task_id, support_id, member.member_id, cmd.kind, due_on=cmd.due_on, at=now,
                            by=by.subject)
    return task_id


async def complete_task(uow, support_id: UUID, task_id: UUID, *, by: Actor, now: datetime) -> None:
    await support_for(uow, support_id, by, lock=True)
    task = await uow.repo.task_member(support_id, task_id)
    if task is None:
        raise Rejected.not_found("タスク", "task")
    member_id, done = task
    if by.is_partner and (await uow.repo.member(member_id)).partner_id != by.partner_id:
        raise Rejected.forbidden("他の構成員のタスクは完了にできません。", "a partner may complete only its own tasks")
    if done:
        raise Rejected.conflict("このタスクはすでに完了しています。", "the task is already done")
    await uow.repo.complete_task(task_id, at=now, by=by.subject)
