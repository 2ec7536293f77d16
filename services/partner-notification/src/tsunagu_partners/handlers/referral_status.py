"""partner-notification's copy of each referral's status, which partners' answers are checked against.

A partner's accepted answer moves it at once (responses.py); referral's events move it too, unless
the partner's own answer already took it further (`reported_status_applies`). Closing a case
(fan_out.on_case_closed) closes its referrals until the case is reopened.

Concurrency: each change takes the referral's row lock (an UPDATE, or SELECT ... FOR UPDATE before
deciding), the same lock an answer holds from its check to its commit; so an answer and an event
about one referral happen one after the other, each seeing the other's result.
"""

from __future__ import annotations

import asyncpg

from tsunagu_contracts import (
    Event, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined, ReferralRerouted,
)
from tsunagu_partners.domain.answers import reported_status_applies

REFERRAL_STATUS = {ReferralAccepted: "accepted", ReferralDeclined: "declined", ReferralContactMade: "contact_made",
                   ReferralCompleted: "completed", ReferralRerouted: "rerouted"}


async def follow_referral(conn: asyncpg.Connection, e: Event) -> None:
    """Bring the copy up to date with one of referral's events (any other event changes nothing)."""
    if type(e) in REFERRAL_STATUS:
        reported = REFERRAL_STATUS[type(e)]
        current = await conn.fetchval("SELECT status FROM partner_referrals WHERE referral_id = $1 FOR UPDATE",
                                      e.referral_id)
        if current is not None and reported_status_applies(current, reported):
            await conn.execute("UPDATE partner_referrals SET status = $2, updated_at = $3 WHERE referral_id = $1",
                               e.referral_id, reported, e.occurred_at)


__all__ = ["REFERRAL_STATUS", "follow_referral"]
