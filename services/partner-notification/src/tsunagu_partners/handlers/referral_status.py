"""partner-notification's copy of each referral's status, which partners' answers are checked against.

A partner's accepted answer moves it at once (responses.py); referral's events move it too, unless
the partner's own answer already took it further (`reported_status_applies`), and so does a request
the partner never received (`left_undelivered`). Closing a case (fan_out.on_case_closed) closes its
referrals until the case is reopened.

Concurrency (adapters/referrals.py): each change takes the referral's row lock (an UPDATE, or SELECT ... FOR UPDATE
before deciding), the same lock an answer holds from its check to its commit; so an answer and an event
about one referral happen one after the other, each seeing the other's result.
"""

from __future__ import annotations

from tsunagu_contracts import (
    Event, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined, ReferralRerouted,
)
from tsunagu_partners.domain.answers import reported_status_applies, status_when_undelivered

REFERRAL_STATUS = {ReferralAccepted: "accepted", ReferralDeclined: "declined", ReferralContactMade: "contact_made",
                   ReferralCompleted: "completed", ReferralRerouted: "rerouted"}


async def follow_referral(uow, e: Event) -> None:
    """Bring the copy up to date with one of referral's events (any other event changes nothing)."""
    if type(e) in REFERRAL_STATUS:
        reported = REFERRAL_STATUS[type(e)]
        referrals = uow.repo.referrals
        current = await referrals.lock_status(e.referral_id)
        if current is not None and reported_status_applies(current, reported):
            await referrals.set_status(e.referral_id, reported, e.occurred_at)


async def left_undelivered(uow, referral_id, at) -> None:
    """The request to take the referral never reached the partner: the copy moves as referral will
    move the referral on DeliveryFailed, in the transaction that reports it, so that an answer the
    partner sends after all is refused here rather than dropped by referral."""
    referrals = uow.repo.referrals
    current = await referrals.lock_status(referral_id)
    if current is not None and (after := status_when_undelivered(current)) != current:
        await referrals.set_status(referral_id, after, at)


__all__ = ["REFERRAL_STATUS", "follow_referral", "left_undelivered"]
