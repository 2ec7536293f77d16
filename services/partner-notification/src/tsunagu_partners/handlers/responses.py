"""A partner's answer to a referral addressed to it becomes PartnerResponded, for the referral service.

Concurrency (adapters/referrals.py): the answer takes the referral's row lock (SELECT ... FOR UPDATE
on partner_referrals) before checking it, and holds it to the commit. Two answers for one referral are checked and
written one after the other, the second against the status the first left; their events get
outbox ids in that order, and the relay publishes a case's records in id order (the record key is
the case id), so referral applies them in the order they were accepted here.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from tsunagu_contracts import PartnerResponded, uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_partners.domain.answers import AnswerRefused, status_after
from tsunagu_partners.domain.commands import RespondToReferral
from tsunagu_servicehost.errors import Rejected
from tsunagu_partners.handlers.access import check_referral


async def respond(uow, partner_id: UUID, referral_id: UUID, cmd: RespondToReferral, *, now: datetime) -> UUID:
    """Check the answer against the referral, store it and publish it; refused answers change nothing."""
    referrals = uow.repo.referrals
    current = await referrals.lock_status(referral_id, partner_id)
    if current is None:
        raise Rejected.not_found("この団体宛ての紹介", "referral addressed to this partner")
    try:
        status = status_after(current, cmd.response)
    except AnswerRefused as refused:
        raise Rejected.conflict(refused.message_ja, refused.message_en) from None
    referral, _ = await check_referral(uow.repo.access, partner_id, referral_id, today=japan_date(now),
                                       refused_ja="本人の同意が撤回されたため、この紹介には回答できません。",
                                       refused_en="the person's consent for this partner was withdrawn")
    response_id = uuid7()
    try:
        event = PartnerResponded(case_id=referral["case_id"], municipality_code=referral["municipality_code"],
                                 occurred_at=now, response_id=response_id, partner_id=partner_id, referral_id=referral_id,
                                 response=cmd.response, decline_reason=cmd.decline_reason,
                                 contact_method=cmd.contact_method, outcome=cmd.outcome)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise Rejected.invalid("response", "回答の内容が回答の種類と合っていません。", message) from None
    await referrals.record_response(response_id, partner_id, referral_id, cmd.response.value, now)
    # At once, in this transaction: the partner's next answer is checked against this one.
    await referrals.set_status(referral_id, status, now)
    uow.emit(event)
    return response_id
