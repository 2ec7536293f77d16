"""A partner's referral rests on the person's consent, or on a statutory basis (支援会議): when the
last of those it rests on is withdrawn or ended, the referral is withdrawn and the need goes to a
city division, which needs no consent, instead of waiting with the partner until its deadline.

Referral keeps the consents and grants partners hold per case (`permissions`), from intake's events,
to tell whether another consent or basis still covers a referral. A redelivered event finds its id
among the applied events and changes nothing (the consumer records it in the same transaction).
"""

from __future__ import annotations

import logging

from tsunagu_contracts import (
    ConsentGranted, ConsentWithdrawn, Recipient, StatutoryBasisEnded, StatutoryBasisRecorded,
)
from tsunagu_contracts.codes import RecipientKind, RerouteReason, referral_purposes
from tsunagu_contracts.japan import japan_date
from tsunagu_servicehost.errors import Rejected
from tsunagu_referral.domain.model import Detail, Policy
from tsunagu_referral.domain.referral import Action
from tsunagu_referral.handlers.referrals import act

log = logging.getLogger("tsunagu.referral.consent")


async def on_consent_granted(uow, e: ConsentGranted, *, policy: Policy) -> None:
    if e.recipient.kind is RecipientKind.PARTNER:
        await uow.repo.grant(e.consent_id, e.case_id, e.recipient.partner_id, "consent", e.purpose, e.valid_until)


async def on_basis_recorded(uow, e: StatutoryBasisRecorded, *, policy: Policy) -> None:
    if e.recipient.kind is RecipientKind.PARTNER:
        await uow.repo.grant(e.basis_id, e.case_id, e.recipient.partner_id, e.basis.value, e.purpose, e.valid_until)


async def on_consent_withdrawn(uow, e: ConsentWithdrawn, *, policy: Policy) -> None:
    await permission_ended(uow, e, e.consent_id, RerouteReason.CONSENT_WITHDRAWN, policy=policy)


async def on_basis_ended(uow, e: StatutoryBasisEnded, *, policy: Policy) -> None:
    await permission_ended(uow, e, e.basis_id, RerouteReason.STATUTORY_BASIS_ENDED, policy=policy)


async def permission_ended(uow, e: ConsentWithdrawn | StatutoryBasisEnded, grant_id, why: RerouteReason, *,
                           policy: Policy) -> None:
    """Withdraw each active referral of the case to this partner that rested on the purpose ended
    and on no other consent or basis the partner still holds."""
    if e.recipient.kind is not RecipientKind.PARTNER:
        return  # a division needs no consent to take a need
    await uow.repo.end_permission(grant_id, e.occurred_at)
    sheet = await uow.repo.sheet(e.case_id)
    if sheet is None or sheet.closed:
        return  # a closed case's referrals change no more
    # The referrals are read without a lock: each withdrawal is an action, which locks the referral
    # and its sheet as every action does and is refused when the referral moved on meanwhile.
    partner = Recipient.of_partner(e.recipient.partner_id)
    held = await uow.repo.purposes_held(e.case_id, e.recipient.partner_id, japan_date(e.occurred_at))
    for referral in await uow.repo.referrals_of_case(e.case_id):
        needs = referral_purposes(referral.need)
        if not referral.status.active or referral.recipient != partner or e.purpose not in needs or needs & held:
            continue
        try:
            async with uow.savepoint():
                await act(uow, referral.referral_id, Action.WITHDRAW, Detail(why=why), now=e.occurred_at,
                          policy=policy)
        except Rejected as rejected:
            log.info("referral %s not withdrawn: %s", referral.referral_id, rejected.message_en)
