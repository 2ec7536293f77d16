"""The intake HTTP API: thin routes that validate, authorise and call the handlers.

Each write is one unit of work (adapters/repository.py); a handler's `Rejected` rolls it back and is
answered with its status by the service host's error handlers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts.codes import ConsentPurpose, Division, LegalBasis, NeedCategory
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.adapters.idempotency import once, request_hash
from tsunagu_intake.adapters.repository import Repository, unit_of_work
from tsunagu_intake.domain.commands import (
    GrantConsent, PersonKey, RecordStatutoryBasis, RegisterConsultation, ScreenCues,
)
from tsunagu_intake.domain.model import StatutoryBasis
from tsunagu_intake.domain.screening import current_chart
from tsunagu_intake.handlers.consents import grant_consent, withdraw_consent
from tsunagu_intake.handlers.provisions import provide_person
from tsunagu_intake.handlers.consultations import identify_need, possible_duplicates, register_consultation
from tsunagu_intake.handlers.screening import screen
from tsunagu_intake.handlers.statutory_bases import end_statutory_basis, record_statutory_basis
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Principal, Role, require
from tsunagu_servicehost.errors import CONFLICT, Refused
from tsunagu_servicehost.rows import jsonable

STAFF = (Role.COUNTER, Role.COORDINATOR)


class IdentifyNeed(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"need": "no_food", "identified_by": "living_support", "via_screening": True}]})

    need: NeedCategory
    identified_by: Division
    via_screening: bool = False


class ConsultationCreated(BaseModel):
    case_id: UUID
    consultation_id: UUID
    person_ref: UUID
    consent_ids: list[UUID]
    possible_duplicates: list[UUID] = Field(description="Persons with the same kana name and birth date (the 20 registered first, at most).")
    warning_ja: str | None = None


DUPLICATE_WARNING_JA = "同じ氏名（かな）と生年月日の方がすでに登録されています。同一人物か確認してください。"


class PossibleDuplicates(BaseModel):
    possible_duplicates: list[UUID] = Field(description="Persons with the same kana name and birth date (the 20 registered first, at most).")
    warning_ja: str | None = None


def basis_view(row: dict) -> dict:
    """A statutory basis as staff read it: codes with their Japanese labels."""
    members = row["members"] if isinstance(row["members"], list) else json.loads(row["members"])
    return {
        "basis_id": str(row["basis_id"]), "basis": row["basis"], "basis_label_ja": LegalBasis(row["basis"]).label_ja,
        "held_on": row["held_on"].isoformat(), "valid_until": row["valid_until"].isoformat(), "members": members,
        "purposes": [{"code": p, "label_ja": ConsentPurpose(p).label_ja} for p in row["purposes"]],
        "recorded_at": row["recorded_at"].isoformat() if row.get("recorded_at") else None,
        "ended_at": row["ended_at"].isoformat() if row["ended_at"] else None,
    }


def decision_view(basis: StatutoryBasis) -> dict:
    return basis_view({
        "basis_id": basis.basis_id, "basis": basis.basis.value, "held_on": basis.held_on,
        "valid_until": basis.valid_until, "ended_at": basis.ended_at,
        "members": [m.model_dump(mode="json", exclude_none=True)
                    for m in dict.fromkeys(g.recipient for g in basis.grants)],
        "purposes": list(dict.fromkeys(g.purpose.value for g in basis.grants))})


def build_router(runtime: Runtime, *, cipher: Callable[[], PersonalDataCipher],
                 municipality_code: str) -> list[APIRouter]:
    router = APIRouter(prefix="/v1", tags=["intake 相談受付"])
    personal_data = cache(cipher)

    def now() -> datetime:
        return datetime.now(UTC)

    @router.post("/consultations", status_code=201, response_model=ConsultationCreated,
                 summary="相談を登録する (register a consultation at any counter)")
    async def post_consultation(
        request: Request, command: RegisterConsultation,
        who: Annotated[Principal, Depends(require(*STAFF))],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
    ) -> JSONResponse:
        async def work() -> tuple[int, dict]:
            done = await register_consultation(uow, command, cipher=personal_data(), staff=who.subject,
                                               municipality_code=municipality_code, now=now())
            body = ConsultationCreated(
                case_id=done.case_id, consultation_id=done.consultation_id, person_ref=done.person_ref,
                consent_ids=done.consent_ids, possible_duplicates=done.possible_duplicates,
                warning_ja=DUPLICATE_WARNING_JA if done.possible_duplicates else None)
            return 201, body.model_dump(mode="json")

        async with unit_of_work(runtime.db) as uow:
            status, body = await once(uow.repo, who.subject, idempotency_key, request_hash(await request.body()), work)
        return JSONResponse(body, status_code=status)

    @router.post("/persons/possible-duplicates", response_model=PossibleDuplicates,
                 summary="同一人物の可能性がある登録済みの相談者 (persons with the same kana name and birth date)",
                 dependencies=[Depends(require(*STAFF))])
    async def post_possible_duplicates(key: PersonKey) -> PossibleDuplicates:
        """Asked before registering someone as new, so staff can register the consultation to the person
        already known instead. Answers pseudonymous ids only; a POST keeps the name out of URLs and logs."""
        async with runtime.db.acquire() as conn:
            found = await possible_duplicates(Repository(conn), key, cipher=personal_data())
        return PossibleDuplicates(possible_duplicates=found, warning_ja=DUPLICATE_WARNING_JA if found else None)

    @router.post("/screening", summary="相談チャートで気づきから課題を提案する (screening suggestions)",
                 dependencies=[Depends(require(*STAFF))])
    async def post_screening(command: ScreenCues) -> dict:
        chart, suggestions = screen(command)
        return {"chart_version": chart.version, "suggestions": [s.model_dump(mode="json") for s in suggestions]}

    @router.get("/screening/chart", summary="現在の相談チャート (the current screening chart)",
                dependencies=[Depends(require(*STAFF))])
    async def get_chart() -> dict:
        return current_chart().model_dump(mode="json")

    @router.post("/cases/{case_id}/needs", responses=CONFLICT, status_code=204, summary="課題を追加する (identify a further need)",
                 dependencies=[Depends(require(*STAFF))])
    async def post_need(case_id: UUID, command: IdentifyNeed) -> None:
        async with unit_of_work(runtime.db) as uow:
            await identify_need(uow, case_id, command.need, command.identified_by,
                                via_screening=command.via_screening, now=now())

    @router.post("/cases/{case_id}/consents", responses=CONFLICT, status_code=201, summary="本人同意を記録する (record consent)")
    async def post_consent(case_id: UUID, command: GrantConsent,
                           who: Annotated[Principal, Depends(require(*STAFF))]) -> dict:
        async with unit_of_work(runtime.db) as uow:
            consent_id = await grant_consent(uow, case_id, command, now=now())
        return {"consent_id": str(consent_id)}

    @router.post("/consents/{consent_id}/withdrawal", responses=CONFLICT, status_code=204,
                 summary="同意を撤回する (withdraw consent)", dependencies=[Depends(require(*STAFF))])
    async def post_withdrawal(consent_id: UUID) -> None:
        async with unit_of_work(runtime.db) as uow:
            await withdraw_consent(uow, consent_id, now=now())

    @router.post("/cases/{case_id}/statutory-bases", responses=CONFLICT, status_code=201,
                 summary="支援会議の決定を記録する (record a statutory basis for sharing without consent)")
    async def post_statutory_basis(case_id: UUID, command: RecordStatutoryBasis,
                                   who: Annotated[Principal, Depends(require(Role.COORDINATOR))]) -> dict:
        async with unit_of_work(runtime.db) as uow:
            basis = await record_statutory_basis(uow, case_id, command, staff=who.subject, now=now())
        return decision_view(basis)

    @router.post("/cases/{case_id}/statutory-bases/{basis_id}/end", responses=CONFLICT,
                 summary="支援会議の決定を終了する (end a statutory basis: like a withdrawn consent)")
    async def post_statutory_basis_end(case_id: UUID, basis_id: UUID,
                                       who: Annotated[Principal, Depends(require(Role.COORDINATOR))]) -> dict:
        async with unit_of_work(runtime.db) as uow:
            basis = await end_statutory_basis(uow, case_id, basis_id, staff=who.subject, now=now())
        return decision_view(basis)

    @router.get("/cases/{case_id}", summary="相談の状況 (a case: consultations, needs, consent, statutory bases, referrals)",
                dependencies=[Depends(require(*STAFF, Role.OPS))])
    async def get_case(case_id: UUID) -> dict:
        async with runtime.db.acquire() as conn:
            repo = Repository(conn)
            case = await repo.case_record(case_id)
            if case is None:
                raise Refused.not_found("相談", "case")
            consultations = await repo.consultations_of(case_id)
            consents = await repo.consents_of(case_id)
            referrals = await repo.referrals_of(case_id)
            bases = await repo.statutory_bases_of(case_id)
            provided = await repo.provisions_of(case_id)
        needs = list(dict.fromkeys(n for c in consultations for n in c["needs"]))
        return {
            "case_id": str(case_id), "person_ref": str(case["person_ref"]),
            "opened_at": case["opened_at"].isoformat(),
            "closed_at": case["closed_at"].isoformat() if case["closed_at"] else None,
            "needs": [{"code": n, "label_ja": NeedCategory(n).label_ja} for n in needs],
            "consultations": [jsonable(c) for c in consultations],
            "consents": [jsonable(c) | {"recipient": json.loads(c["recipient"])} for c in consents],
            "referrals": [jsonable(r) | {"recipient": json.loads(r["recipient"])} for r in referrals],
            "statutory_bases": [basis_view(dict(b)) for b in bases],
            "provisions": [jsonable(p) for p in provided],
        }

    return [router]


def build_internal_router(runtime: Runtime, *, cipher: Callable[[], PersonalDataCipher]) -> list[APIRouter]:
    """Service-to-service routes, served on the internal port only (TSUNAGU_INTERNAL_PORT)."""
    internal = APIRouter(prefix="/internal/v1", tags=["internal"])
    personal_data = cache(cipher)

    @internal.get("/cases/{case_id}/person", summary="本人情報（サービス間） (person details, service to service)")
    async def person_details(case_id: UUID, partner_id: UUID, purpose: ConsentPurpose,
                             who: Annotated[Principal, Depends(require(Role.SERVICE))]) -> dict:
        """Decrypted details for the partner and purpose the caller names; 403 unless the case holds an
        active consent or statutory basis for both. Each answer is recorded as a provision."""
        async with unit_of_work(runtime.db) as uow:
            return await provide_person(uow, case_id, partner_id=partner_id, purpose=purpose, requested_by=who.subject,
                                        cipher=personal_data(), now=datetime.now(UTC))

    return [internal]
