"""A referral that never reached its partner: partner-notification gave up delivering it.

The partner cannot accept what it never heard of, so the referral is marked unreachable and the
need goes to the next candidate at once (the coordinator, when the routing table has no other),
instead of waiting days for the acceptance deadline. Coordinators see unreachable referrals at
the top of their list: someone should call the partner about its endpoint.
"""

from __future__ import annotations

import logging

from tsunagu_contracts import DeliveryFailed, Recipient
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.model import Detail, Policy
from tsunagu_referral.domain.referral import Action
from tsunagu_referral.handlers.referrals import act

log = logging.getLogger("tsunagu.referral")


async def on_delivery_failed(uow, e: DeliveryFailed, *, policy: Policy) -> None:
    if e.referral_id is None:
        return  # not a request to take a referral (a notice, a status change): nothing to move
    try:
        async with uow.savepoint():  # a refused move leaves the event recorded as applied
            await act(uow, e.referral_id, Action.MARK_UNREACHABLE, Detail(), now=e.occurred_at, policy=policy,
                      recipient_must_be=Recipient.of_partner(e.partner_id))
    except Rejected as rejected:
        # The referral moved on meanwhile (the partner answered through the API after all, a
        # coordinator rerouted it, the case was closed): it stays as it is.
        log.info("undelivered referral %s left as it is: %s", e.referral_id, rejected.message_en)
