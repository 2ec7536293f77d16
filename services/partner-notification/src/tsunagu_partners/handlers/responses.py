"""A partner's answer to a referral addressed to it becomes PartnerResponded, for the referral service."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from tsunagu_contracts import PartnerResponded, uuid7
from tsunagu_partners.domain.commands import RespondToReferral
from tsunagu_contracts.japan import japan_date
from tsunagu_partners.handlers.access import referral_for
from tsunagu_outbox import append
from tsunagu_servicehost.errors import Refused


async def respond(conn: asyncpg.Connection, partner_id: UUID, referral_id: UUID, cmd: RespondToReferral, *,
                  now: datetime) -> UUID:
    referral, _ = await referral_for(conn, partner_id, referral_id, today=japan_date(now),
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
        raise Refused.invalid("response", "回答の内容が回答の種類と合っていません。", message) from None
    await conn.execute("INSERT INTO responses (response_id, partner_id, referral_id, response, created_at) "
                       "VALUES ($1, $2, $3, $4, $5)", response_id, partner_id, referral_id, cmd.response.value, now)
    await append(conn, event)
    return response_id
