"""The person closes the loop: some business days after a referral was accepted or completed, the
counter that registered the case asks whether the help arrived (フォローアップ).

The follow-up is scheduled by the action itself (referrals.schedule_follow_up); the timer opens it
when it falls due (FollowUpDue, addressed to that counter); the answer is FollowUpAnswered. An answer
of `reached_not_helped` opens the need again for the coordinator, as a new referral.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tsunagu_contracts import FollowUpAnswered, FollowUpDue
from tsunagu_contracts.codes import FollowUpOutcome
from tsunagu_contracts.japan import japan_date
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.model import FollowUp, Policy
from tsunagu_referral.domain.routing import FALLBACK
from tsunagu_referral.handlers.referrals import request


async def open_due_follow_ups(uow, *, now: datetime, limit: int = 200) -> int:
    """Follow-ups whose day has come, on open cases, become FollowUpDue for their counter."""
    due = await uow.repo.falling_due(japan_date(now), limit)
    if not due:
        return 0
    await uow.repo.open_follow_ups([f.follow_up_id for f, _ in due], now)
    uow.emit(*(FollowUpDue(
        case_id=f.case_id, municipality_code=municipality_code, occurred_at=now, follow_up_id=f.follow_up_id,
        referral_id=f.referral_id, need=f.need, counter=f.counter, due_on=f.due_on, answer_by=f.answer_by)
        for f, municipality_code in due))
    return len(due)


async def answer_follow_up(uow, follow_up_id: UUID, outcome: FollowUpOutcome, *, staff: str, now: datetime,
                           policy: Policy) -> FollowUp:
    found = await uow.repo.follow_up(follow_up_id)  # unlocked: only to find its case
    if found is None:
        raise Rejected.not_found("フォローアップ", "follow-up")
    # The sheet's lock, then the follow-up's: the order every path takes (adapters/repository.py).
    sheet = await uow.repo.sheet(found.case_id, lock=True)
    follow_up = await uow.repo.follow_up(follow_up_id, lock=True)
    if follow_up.answered_at is not None:
        raise Rejected.conflict("このフォローアップはすでに回答済みです。", "the follow-up was already answered",
                                outcome=follow_up.outcome.value)
    if follow_up.opened_at is None:
        raise Rejected.conflict(f"このフォローアップの確認日は {follow_up.due_on.isoformat()} です。まだ回答できません。",
                                f"the follow-up is not due before {follow_up.due_on.isoformat()}")
    if sheet.closed:
        raise Rejected.conflict("この相談は終了しています。支援が必要な場合は、相談を登録してください。",
                                "the case is closed; register a consultation if the person needs help")
    reopened = None
    if outcome is FollowUpOutcome.REACHED_NOT_HELPED and not await with_coordinator(uow, follow_up):
        requested = await request(uow, sheet, follow_up.need, await uow.repo.next_rank(sheet.case_id, follow_up.need),
                                  FALLBACK, sheet.urgency, now=now, policy=policy)
        uow.emit(requested)
        reopened = requested.referral_id
    await uow.repo.answer_follow_up(follow_up_id, outcome, by=staff, at=now, reopened_referral_id=reopened)
    uow.emit(FollowUpAnswered(
        case_id=sheet.case_id, municipality_code=sheet.municipality_code, occurred_at=now,
        follow_up_id=follow_up_id, referral_id=follow_up.referral_id, need=follow_up.need,
        counter=follow_up.counter, outcome=outcome, reopened_referral_id=reopened))
    return await uow.repo.follow_up(follow_up_id)


async def with_coordinator(uow, follow_up: FollowUp) -> bool:
    """The coordinator already holds the need: the answer adds no second referral beside it."""
    return any(r.need is follow_up.need and r.status.active and r.recipient == FALLBACK for r in await uow.repo.referrals_of_case(follow_up.case_id))


__all__ = ["answer_follow_up", "open_due_follow_ups"]
