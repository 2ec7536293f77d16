"""Keeps intake's view of each case's referrals, and whether the case is open, from the referral
service's events. The referral consumer is the view's single writer (adapters/repository.py)."""

from __future__ import annotations

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted,
)
from tsunagu_contracts.codes import RerouteReason

STATUS = {ReferralAccepted: "accepted", ReferralDeclined: "declined", ReferralContactMade: "contact_made",
          ReferralCompleted: "completed", ReferralRerouted: "rerouted"}


async def on_referral_requested(uow, e: ReferralRequested) -> None:
    await uow.repo.remember_referral(e.referral_id, e.case_id, e.need, e.recipient, at=e.occurred_at)


WITHDRAWN = frozenset({RerouteReason.CONSENT_WITHDRAWN, RerouteReason.STATUTORY_BASIS_ENDED})
"""A referral that left its partner because the consent or basis it rested on ended: staff at the
counter see it as withdrawn, as the referral service shows it, not as an ordinary reroute."""


async def on_referral_changed(uow, e) -> None:
    status = "withdrawn" if isinstance(e, ReferralRerouted) and e.reason in WITHDRAWN else STATUS[type(e)]
    await uow.repo.set_referral_status(e.referral_id, status, at=e.occurred_at)


async def on_referral_overdue(uow, e: ReferralOverdue) -> None:
    await uow.repo.mark_referral_overdue(e.referral_id)


async def on_case_closed(uow, e: CaseClosed) -> None:
    await uow.repo.close_case(e.case_id, at=e.occurred_at, reason=e.reason.value)


async def on_case_reopened(uow, e: CaseReopened) -> None:
    await uow.repo.reopen_case(e.case_id)


HANDLERS = {
    ReferralRequested: on_referral_requested,
    **{event: on_referral_changed for event in STATUS},
    ReferralOverdue: on_referral_overdue,
    CaseClosed: on_case_closed,
    CaseReopened: on_case_reopened,
}
