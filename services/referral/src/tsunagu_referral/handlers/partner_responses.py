"""A partner's answer, relayed by partner-notification, moves the referral it is about."""

from __future__ import annotations

import logging

from tsunagu_contracts import PartnerResponded, Recipient
from tsunagu_contracts.codes import PartnerResponseKind
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.model import Detail, Policy
from tsunagu_referral.domain.referral import Action
from tsunagu_referral.handlers.referrals import act

log = logging.getLogger("tsunagu.referral")

ACTIONS = {PartnerResponseKind.ACCEPTED: Action.ACCEPT, PartnerResponseKind.DECLINED: Action.DECLINE,
           PartnerResponseKind.CONTACT_MADE: Action.CONTACT, PartnerResponseKind.COMPLETED: Action.COMPLETE}


async def on_partner_responded(uow, e: PartnerResponded, *, policy: Policy) -> None:
    detail = Detail(reason=e.decline_reason, method=e.contact_method, outcome=e.outcome)
    try:
        async with uow.savepoint():  # a refused answer leaves the event recorded as applied
            await act(uow, e.referral_id, ACTIONS[e.response], detail, now=e.occurred_at, policy=policy,
                      recipient_must_be=Recipient.of_partner(e.partner_id))
    except Rejected as rejected:
        # The partner's answer no longer fits (answered twice, case closed): nothing to change.
        log.info("partner response %s to referral %s not applied: %s", e.response.value, e.referral_id,
                 rejected.message_en)
