"""Details a partner fetches for a referral addressed to it, each fetch recorded as a provision.

The person's name and contact never travel on topics or webhooks. A partner holding consent (or
a recorded statutory basis) fetches here the items its purpose needs (domain.provision); each
provision is recorded with the recipient, the person, the items and the basis (個人情報保護法 art. 29).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_partners.domain.provision import provided
from tsunagu_partners.handlers.access import referral_for

FetchPerson = Callable[[UUID], Awaitable[dict]]


async def provide(conn: asyncpg.Connection, partner_id: UUID, referral_id: UUID, fetch_person: FetchPerson, *,
                  now: datetime) -> dict:
    referral, grant = await referral_for(conn, partner_id, referral_id, today=japan_date(now),
                                         refused_ja="本人の同意がないため、本人情報は提供できません。",
                                         refused_en="no consent or statutory basis for this partner: "
                                                    "nothing is provided")
    person = await fetch_person(referral["case_id"])
    given = provided(person, grant["purpose"])
    items = list(given)
    await conn.execute(
        "INSERT INTO provisions (provision_id, partner_id, person_ref, case_id, referral_id, items, basis, purpose, "
        "provided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", uuid7(), partner_id, UUID(person["person_ref"]),
        referral["case_id"], referral_id, items, grant["basis"], grant["purpose"], now)
    return {"referral_id": str(referral_id), "case_id": str(referral["case_id"]), "need": referral["need"],
            "person": {"person_ref": person["person_ref"], **given},
            "provision": {"basis": grant["basis"], "purpose": grant["purpose"], "items": items,
                          "notice_ja": "この提供は記録されています（個人情報保護法第29条）。"}}
