"""Housing support's events move the case's housing referral, so the つなぐシート shows its progress.

- HousingSupportOpened: the council took the case on, so the referral is accepted.
- The first stage move, or the first check-in that reached the person: contact made.
- The support ending: completed, with an outcome that says whether the person was housed.

A housing referral may be answered by a partner too (a 居住支援法人 routed the need); whichever
answer comes second no longer fits and is skipped, leaving the event recorded as applied.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import CheckInRecorded, HousingSupportOpened, TenancyStageChanged
from tsunagu_contracts.codes import CheckInResult, NeedCategory, TenancyStage
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.housing import contact_method, outcome
from tsunagu_referral.domain.model import Detail, Policy
from tsunagu_referral.domain.referral import Action, Status
from tsunagu_referral.handlers.referrals import act

log = logging.getLogger("tsunagu.referral.housing")
HOUSED = frozenset({TenancyStage.MOVE_IN, TenancyStage.ACCOMPANIMENT})


async def move(uow, case_id: UUID, action: Action, detail: Detail, *, when: Status | None, now: datetime,
               policy: Policy) -> None:
    referral = await uow.repo.latest_active(case_id, NeedCategory.HOUSING)
    if referral is None or (when is not None and referral.status is not when):
        return
    try:
        async with uow.savepoint():  # a move that no longer fits changes nothing
            await act(uow, referral.referral_id, action, detail, now=now, policy=policy)
    except Rejected as rejected:
        log.info("housing progress not applied to referral %s: %s", referral.referral_id, rejected.message_en)


async def on_support_opened(uow, e: HousingSupportOpened, *, policy: Policy) -> None:
    await move(uow, e.case_id, Action.ACCEPT, Detail(), when=Status.REQUESTED, now=e.occurred_at, policy=policy)


async def on_stage_changed(uow, e: TenancyStageChanged, *, policy: Policy) -> None:
    if e.to_stage is TenancyStage.ENDED:
        result = outcome(e.end_reason, housed=e.from_stage in HOUSED) if e.end_reason else None
        await move(uow, e.case_id, Action.COMPLETE, Detail(outcome=result), when=None, now=e.occurred_at,
                   policy=policy)
    else:
        await move(uow, e.case_id, Action.CONTACT, Detail(method=contact_method(None)), when=Status.ACCEPTED,
                   now=e.occurred_at, policy=policy)


async def on_check_in_recorded(uow, e: CheckInRecorded, *, policy: Policy) -> None:
    """A check-in that reached the person is contact: the case is not silent, nobody is alone."""
    if e.result is CheckInResult.NOT_AT_HOME:
        return
    await move(uow, e.case_id, Action.CONTACT, Detail(method=contact_method(e.kind)), when=Status.ACCEPTED,
               now=e.occurred_at, policy=policy)
    # After `move`, which locks the referral and then the sheet: the same order as every other action.
    await uow.repo.record_contact(e.case_id, e.occurred_at, keep_later=True)
