"""A partner's answer, relayed by partner-notification, moves the referral it is about."""

from __future__ import annotations

import logging

import asyncpg

from tsunagu_contracts import Envelope, PartnerResponded, Recipient
from tsunagu_contracts.codes import PartnerResponseKind
from tsunagu_referral.domain.referral import Action
from tsunagu_referral.handlers.referrals import Detail, Policy, act
from tsunagu_servicehost.errors import Refused

log = logging.getLogger("tsunagu.referral")

ACTIONS = {PartnerResponseKind.ACCEPTED: Action.ACCEPT, PartnerResponseKind.DECLINED: Action.DECLINE,
           PartnerResponseKind.CONTACT_MADE: Action.CONTACT, PartnerResponseKind.COMPLETED: Action.COMPLETE}


async def on_partner_responded(conn: asyncpg.Connection, envelope: Envelope[PartnerResponded], *,
                               policy: Policy) -> None:
    e = envelope.data
    detail = Detail(reason=e.decline_reason, method=e.contact_method, outcome=e.outcome)
    try:
        async with conn.transaction():  # a savepoint: a refused answer leaves the event recorded as applied
            await act(conn, e.referral_id, ACTIONS[e.response], detail, now=e.occurred_at, policy=policy,
                      recipient_must_be=Recipient.of_partner(e.partner_id))
    except Refused as refused:
        # The partner's answer no longer fits (answered twice, case closed): nothing to change.
        log.info("partner response %s not applied: %s", envelope.id, refused.message_en)
