"""Details a partner fetches for a referral addressed to it, each fetch recorded as a provision.

The person's name and contact never travel on topics or webhooks. A partner holding consent (or
a recorded statutory basis) fetches here the items its purpose needs (domain.provision); each
provision is recorded with the recipient, the person, the items and the basis (個人情報保護法 art. 29).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.domain.provision import provided
from tsunagu_partners.handlers.access import check_referral
from tsunagu_servicehost.errors import Rejected

FetchPerson = Callable[..., Awaitable[dict]]
"""`fetch_person(case_id, partner_id=…, purpose=…)`: intake gives the details only under its own record
of the person's consent (or a statutory basis) to that partner for that purpose, and records the
provision on its side too."""

REFUSED = {"refused_ja": "本人の同意がないため、本人情報は提供できません。",
           "refused_en": "no consent or statutory basis for this partner: nothing is provided"}


async def provide(new_uow: NewUnitOfWork, partner_id: UUID, referral_id: UUID, fetch_person: FetchPerson, *,
                  now: datetime) -> dict:
    """The person's details the partner's purpose needs, recorded as a provision.

    No connection is held while intake answers: the pool is the consumers' too, and a slow intake
    would otherwise leave them none (ten fetches at a time took it all). So `new_uow` gives a unit
    of work per step, each its own short transaction: the permission is checked in one; intake is
    asked with none open; the provision is recorded in a second that decides again, under the
    case's lock (adapters/held_events.py), so that a consent withdrawn or a case closed meanwhile
    refuses the fetch, and nothing is given or recorded.
    """
    today = japan_date(now)
    async with new_uow() as uow:
        referral, asked = await check_referral(uow.repo.access, partner_id, referral_id, today=today, **REFUSED)
    person = await fetch_person(referral["case_id"], partner_id=partner_id, purpose=asked["purpose"])
    async with new_uow() as uow:
        await uow.repo.held.lock_case(referral["case_id"])
        referral, grant = await check_referral(uow.repo.access, partner_id, referral_id, today=today, **REFUSED)
        if grant["purpose"] != asked["purpose"]:
            # Intake gave (and recorded) the details for the purpose asked; what lets the partner see them
            # changed meanwhile, so nothing is given under another purpose than intake recorded.
            raise Rejected.conflict("本人の同意の内容が変わりました。もう一度お試しください。",
                                    "the consent or basis changed while intake answered: try again")
        given = provided(person, grant["purpose"])
        items = list(given)
        await uow.repo.provisions.record(uuid7(), partner_id, UUID(person["person_ref"]), referral["case_id"],
                                         referral_id, items, grant["basis"], grant["purpose"], now)
    return {"referral_id": str(referral_id), "case_id": str(referral["case_id"]), "need": referral["need"],
            "person": {"person_ref": person["person_ref"], **given},
            "provision": {"basis": grant["basis"], "purpose": grant["purpose"], "items": items,
                          "notice_ja": "この提供は記録されています（個人情報保護法第29条）。"}}
