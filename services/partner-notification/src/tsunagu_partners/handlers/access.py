"""What a partner may act on: referrals addressed to it, on cases it holds consent or a basis for."""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol
from uuid import UUID

from tsunagu_contracts.codes import ConsentPurpose, referral_purposes
from tsunagu_partners.domain.answers import CLOSED
from tsunagu_servicehost.errors import Rejected

ACTIVE = frozenset({"requested", "accepted", "contact_made"})


class AccessReads(Protocol):
    async def referral(self, partner_id: UUID, referral_id: UUID) -> Any: ...
    async def grant(self, case_id: UUID, partner_id: UUID, today: date, purposes: list[str],
                    preferred_purpose: str) -> Any: ...
    async def other_purposes(self, case_id: UUID, partner_id: UUID, today: date) -> list[str] | None: ...


async def check_referral(reads: AccessReads, partner_id: UUID, referral_id: UUID, *, today: date,
                         refused_ja: str, refused_en: str) -> tuple[Any, Any]:
    """The referral addressed to this partner, and the consent or statutory basis that lets it act:
    a consent for a purpose the referral's need serves (tsunagu_contracts.codes.referral_purposes), or any basis.

    Rejected as not found when the referral is not addressed to the partner; as forbidden when the
    case is closed, the referral has left the partner, or nothing (or no longer anything) lets it
    see the case.
    """
    referral = await reads.referral(partner_id, referral_id)
    if referral is None:
        raise Rejected.not_found("この団体宛ての紹介", "referral addressed to this partner")
    if referral["status"] == CLOSED:
        raise Rejected.forbidden("この相談は終了したため、紹介への回答や本人情報の取得はできません。",
                                 "the case is closed: the partner no longer answers this referral or receives the "
                                 "person's details")
    if referral["status"] not in ACTIVE:
        raise Rejected.forbidden("この紹介は終了しているか、他の紹介先に移っています。",
                                 f"the referral is {referral['status']}: it is no longer with this partner")
    purposes = sorted(referral_purposes(referral["need"]))
    grant = await reads.grant(referral["case_id"], partner_id, today, purposes, ConsentPurpose.REFERRAL)
    if grant is not None:
        return referral, grant
    other = await reads.other_purposes(referral["case_id"], partner_id, today)
    if other:
        needed = [ConsentPurpose(p) for p in purposes]
        raise Rejected.forbidden(f"本人の同意はこの紹介の目的のためのものではありません"
                                 f"（必要な同意の目的: {'、'.join(p.label_ja for p in needed)}）。",
                                 f"the person's consent to this partner is for {', '.join(other)}, not for this "
                                 f"referral (it needs one for {' or '.join(needed)})")
    raise Rejected.forbidden(refused_ja, refused_en)
