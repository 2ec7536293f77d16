"""Consent per recipient and purpose: granted and withdrawn, each change an event.

Every function runs in the caller's unit of work: its changes and the events they cause commit
together, or not at all.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tsunagu_contracts import ConsentGranted, ConsentWithdrawn, uuid7
from tsunagu_intake.domain.commands import ConsentRequest
from tsunagu_servicehost.errors import Rejected


async def grant_consent(uow, case_id: UUID, cmd: ConsentRequest, *, now: datetime) -> UUID:
    # Under the case's row lock: a consent never lands on a case closed meanwhile.
    case = await uow.repo.case(case_id, lock=True)
    if case is None:
        raise Rejected.not_found("相談", "case")
    if case.closed:
        raise Rejected.conflict("終了した相談には同意を記録できません。", "the case is closed")
    consent_id = uuid7()
    await uow.repo.add_consent(consent_id, case_id, case.person_ref, cmd, at=now)
    uow.emit(ConsentGranted(case_id=case_id, municipality_code=case.municipality_code, occurred_at=now,
                            consent_id=consent_id, person_ref=case.person_ref, recipient=cmd.recipient,
                            purpose=cmd.purpose, method=cmd.method, valid_until=cmd.valid_until))
    return consent_id


async def withdraw_consent(uow, consent_id: UUID, *, now: datetime) -> None:
    consent = await uow.repo.consent(consent_id, lock=True)
    if consent is None:
        raise Rejected.not_found("同意", "consent")
    if consent.withdrawn_at is not None:
        raise Rejected.conflict("この同意はすでに撤回されています。", "the consent was already withdrawn")
    await uow.repo.withdraw_consent(consent_id, at=now)
    uow.emit(ConsentWithdrawn(
        case_id=consent.case_id, municipality_code=consent.municipality_code, occurred_at=now, consent_id=consent_id,
        person_ref=consent.person_ref, recipient=consent.recipient, purpose=consent.purpose))
