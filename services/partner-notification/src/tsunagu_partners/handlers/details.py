"""Details a partner fetches for a referral addressed to it, each fetch recorded as a provision.

The person's name, contact and the sheet's summary never travel on topics or webhooks. A partner
holding consent (or a recorded statutory basis) fetches them here; each provision is recorded
with the recipient, the person, the items and the basis (個人情報保護法 art. 29).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import uuid7
from tsunagu_servicehost.errors import Refused

ITEMS = ("name", "name_kana", "phone", "address", "summary")

FetchPerson = Callable[[UUID], Awaitable[dict]]


async def provide(conn: asyncpg.Connection, partner_id: UUID, referral_id: UUID, fetch_person: FetchPerson, *,
                  now: datetime) -> dict:
    referral = await conn.fetchrow("SELECT case_id, need, status FROM partner_referrals "
                                   "WHERE referral_id = $1 AND partner_id = $2", referral_id, partner_id)
    if referral is None:
        raise Refused.not_found("この団体宛ての紹介", "referral addressed to this partner")
    grant = await conn.fetchrow(
        "SELECT basis, purpose FROM permissions WHERE case_id = $1 AND partner_id = $2 AND revoked_at IS NULL "
        "AND (valid_until IS NULL OR valid_until >= $3) ORDER BY basis = 'consent' DESC LIMIT 1",
        referral["case_id"], partner_id, now.date())
    if grant is None:
        raise Refused(403, "本人の同意がないため、本人情報は提供できません。",
                      "no consent or statutory basis for this partner: nothing is provided")
    person = await fetch_person(referral["case_id"])
    items = [item for item in ITEMS if person.get(item)]
    await conn.execute(
        "INSERT INTO provisions (provision_id, partner_id, person_ref, case_id, referral_id, items, basis, purpose, "
        "provided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", uuid7(), partner_id, UUID(person["person_ref"]),
        referral["case_id"], referral_id, items, grant["basis"], grant["purpose"], now)
    return {"referral_id": str(referral_id), "case_id": str(referral["case_id"]), "need": referral["need"],
            "person": {k: person.get(k) for k in ("person_ref", *ITEMS)},
            "provision": {"basis": grant["basis"], "purpose": grant["purpose"], "items": items,
                          "notice_ja": "この提供は記録されています（個人情報保護法第29条）。"}}
