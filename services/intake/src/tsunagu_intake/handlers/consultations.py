"""Registering consultations and identifying needs: the change and its events in one unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import ConsentGranted, ConsultationRegistered, NeedIdentified, uuid7
from tsunagu_contracts.codes import Division, NeedCategory
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.domain.commands import PersonKey, RegisterConsultation, duplicate_key_text
from tsunagu_intake.domain.model import Case
from tsunagu_intake.handlers.screening import chart_named, suggestions
from tsunagu_servicehost.errors import Rejected


@dataclass
class Registered:
    case_id: UUID
    consultation_id: UUID
    person_ref: UUID
    consent_ids: list[UUID] = field(default_factory=list)
    possible_duplicates: list[UUID] = field(default_factory=list)


def check_screening(cmd: RegisterConsultation) -> None:
    """What staff confirmed must be what the chart suggested for the cues they noticed."""
    if cmd.screening is None:
        return
    chart = chart_named(cmd.screening.chart_version, field="screening.chart_version",
                        message_en=f"no screening chart version {cmd.screening.chart_version}")
    suggested = {s.need for s in suggestions(chart, cmd.screening.cues, field="screening.cues")}
    extra = [n.value for n in cmd.screening.confirmed if n not in suggested]
    if extra:
        raise Rejected.invalid("screening.confirmed", "チャートが提案していない課題が「確認済み」になっています。",
                               f"not suggested by the chart for these cues: {', '.join(extra)}")


async def possible_duplicates(repo, key: PersonKey, *, cipher: PersonalDataCipher) -> list[UUID]:
    """Persons already registered with the same kana name and birth date: a hint for staff before they
    register someone as new. Read only; the same check runs again at registration."""
    return await repo.persons_with_duplicate_key(cipher.blind_index(duplicate_key_text(key)))


async def register_consultation(uow, cmd: RegisterConsultation, *, cipher: PersonalDataCipher, staff: str,
                                municipality_code: str, now: datetime) -> Registered:
    check_screening(cmd)
    duplicates: list[UUID] = []
    case_id = None
    if cmd.person_ref is not None:
        person_ref = cmd.person_ref
        # The person's row lock: two registrations at once join one case, never open two.
        if not await uow.repo.person_exists(person_ref, lock=True):
            raise Rejected.invalid("person_ref", "この相談者は登録されていません。", "unknown person_ref")
        # The open case's row lock: a case the referral consumer closes meanwhile is passed over.
        case_id = await uow.repo.open_case_of(person_ref, lock=True)
    else:
        # A new person: the duplicate hint is read as the person is added, and there is no case yet.
        person_ref = uuid7()
        key = cipher.blind_index(duplicate_key_text(cmd.person))
        duplicates = await uow.repo.add_person(person_ref, cipher.seal(cmd.person.model_dump(mode="json")), key)

    if case_id is None:
        case_id = uuid7()
        await uow.repo.open_case(Case(case_id, person_ref, municipality_code), at=now)

    consultation_id = uuid7()
    await uow.repo.add_consultation(consultation_id, case_id, cmd, notes=cipher.seal_text(cmd.notes) if cmd.notes
                                    else None, by=staff, at=now)
    registered = Registered(case_id, consultation_id, person_ref, possible_duplicates=duplicates)
    base = {"case_id": case_id, "municipality_code": municipality_code, "occurred_at": now}
    # Consent goes first: whoever may see the case learns so before the consultation arrives.
    for consent in cmd.consents:
        consent_id = uuid7()
        await uow.repo.add_consent(consent_id, case_id, person_ref, consent, at=now)
        uow.emit(ConsentGranted(**base, consent_id=consent_id, person_ref=person_ref, recipient=consent.recipient,
                                purpose=consent.purpose, method=consent.method, valid_until=consent.valid_until))
        registered.consent_ids.append(consent_id)
    screening = cmd.screening
    uow.emit(ConsultationRegistered(
        **base, consultation_id=consultation_id, person_ref=person_ref, counter=cmd.counter, channel=cmd.channel,
        urgency=cmd.urgency, needs=tuple(cmd.needs), primary_need=cmd.primary_need,
        screening_chart_version=screening.chart_version if screening else None,
        known_person=cmd.person_ref is not None))
    return registered


async def identify_need(uow, case_id: UUID, need: NeedCategory, identified_by: Division, *,
                        via_screening: bool, now: datetime) -> None:
    # The case's row lock: needs added at once all land on one latest consultation, never a closed case.
    case = await uow.repo.case(case_id, lock=True)
    if case is None:
        raise Rejected.not_found("相談", "case")
    if case.closed:
        raise Rejected.conflict("終了した相談には課題を追加できません。", "the case is closed")
    consultation_id = await uow.repo.latest_consultation_id(case_id)
    await uow.repo.add_need(consultation_id, need)
    uow.emit(NeedIdentified(case_id=case_id, municipality_code=case.municipality_code, occurred_at=now,
                            consultation_id=consultation_id, need=need, identified_by=identified_by,
                            via_screening=via_screening))
