"""Statutory bases (支援会議): sharing without consent, decided by a support conference and recorded.

A decision covers members (divisions and partners) and purposes; each member and purpose is one
grant, published as its own StatutoryBasisRecorded, so that a subscriber records permissions the way
it records consents. Ending a decision publishes StatutoryBasisEnded for each grant: it works like a
withdrawn consent. Every function runs in the caller's unit of work.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tsunagu_contracts import StatutoryBasisEnded, StatutoryBasisRecorded, uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_intake.domain.commands import RecordStatutoryBasis
from tsunagu_intake.domain.model import Grant, StatutoryBasis
from tsunagu_servicehost.errors import Rejected


async def record_statutory_basis(uow, case_id: UUID, cmd: RecordStatutoryBasis, *, staff: str,
                                 now: datetime) -> StatutoryBasis:
    today = japan_date(now)
    if cmd.held_on > today:
        raise Rejected.invalid("held_on", "支援会議の開催日が未来の日付です。", "held_on is in the future")
    if cmd.valid_until < today:
        raise Rejected.invalid("valid_until", "共有の期限がすでに過ぎています。", "valid_until has already passed")
    # Under the case's row lock, as a consent: a basis never lands on a case closed meanwhile.
    case = await uow.repo.case(case_id, lock=True)
    if case is None:
        raise Rejected.not_found("相談", "case")
    if case.closed:
        raise Rejected.conflict("終了した相談には支援会議の決定を記録できません。", "the case is closed")
    grants = tuple(Grant(uuid7(), member, purpose) for member in cmd.members for purpose in cmd.purposes)
    basis = StatutoryBasis(uuid7(), case_id, case.person_ref, case.municipality_code, cmd.basis, cmd.held_on,
                           cmd.valid_until, grants)
    await uow.repo.add_statutory_basis(basis, by=staff, at=now)
    uow.emit(*(StatutoryBasisRecorded(
        case_id=case_id, municipality_code=case.municipality_code, occurred_at=now, basis_id=g.grant_id,
        decision_id=basis.basis_id, person_ref=case.person_ref, basis=cmd.basis, recipient=g.recipient,
        purpose=g.purpose, decided_on=cmd.held_on, valid_until=cmd.valid_until) for g in grants))
    return basis


async def end_statutory_basis(uow, case_id: UUID, basis_id: UUID, *, staff: str, now: datetime) -> StatutoryBasis:
    basis = await uow.repo.statutory_basis(basis_id, lock=True)
    if basis is None or basis.case_id != case_id:
        raise Rejected.not_found("支援会議の決定", "statutory basis")
    if basis.ended:
        raise Rejected.conflict("この支援会議の決定はすでに終了しています。", "the statutory basis was already ended")
    await uow.repo.end_statutory_basis(basis_id, by=staff, at=now)
    uow.emit(*(StatutoryBasisEnded(
        case_id=case_id, municipality_code=basis.municipality_code, occurred_at=now, basis_id=g.grant_id,
        decision_id=basis_id, person_ref=basis.person_ref, basis=basis.basis, recipient=g.recipient,
        purpose=g.purpose) for g in basis.grants))
    return await uow.repo.statutory_basis(basis_id)
