"""A person's details given to another service for one partner and purpose, each time recorded.

Intake owns the consents and statutory bases, so intake decides: the calling service names the
partner it fetches for and the purpose, and gets the details only while the case holds an active
consent to that partner for that purpose, or a statutory basis (支援会議) covering both. The
answer holds only the items that purpose needs (tsunagu_contracts.codes.PROVISION_ITEMS; never the
consultation's summary or the counter's notes). The provision is recorded (who asked, for which
partner and purpose, which items, on which grant, when: no personal data) in the transaction that
read the grant (adapters/repository.py states the rule).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tsunagu_contracts import uuid7
from tsunagu_contracts.codes import ConsentPurpose, provided
from tsunagu_contracts.japan import japan_date
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_servicehost.errors import Rejected


async def provide_person(uow, case_id: UUID, *, partner_id: UUID, purpose: ConsentPurpose, requested_by: str,
                         cipher: PersonalDataCipher, now: datetime) -> dict:
    person = await uow.repo.person_of_case(case_id)
    if person is None:
        raise Rejected.not_found("相談", "case")
    grant = await uow.repo.grant_to_partner(case_id, partner_id, purpose.value, japan_date(now))
    if grant is None:
        raise Rejected.forbidden(
            f"この連携団体への「{purpose.label_ja}」のための本人同意（または支援会議の決定）がないため、本人情報は提供できません。",
            f"the case holds no active consent or statutory basis for partner {partner_id} and purpose "
            f"{purpose.value}: nothing is provided")
    details = cipher.open(person["details"])
    given = provided(details, purpose)
    await uow.repo.record_provision(uuid7(), case_id, person["person_ref"], requested_by=requested_by,
                                    partner_id=partner_id, purpose=purpose.value, items=list(given),
                                    basis=grant["basis"], grant_id=grant["grant_id"], at=now)
    return {"person_ref": str(person["person_ref"]), **given,
            "provision": {"basis": grant["basis"], "purpose": purpose.value, "items": list(given)}}
