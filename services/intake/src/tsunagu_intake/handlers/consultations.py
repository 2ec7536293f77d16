"""Registering consultations and identifying needs: the change and its events in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import (
    ConsentGranted, ConsultationRegistered, NeedIdentified, uuid7,
)
from tsunagu_contracts.codes import Division, NeedCategory
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.domain.commands import RegisterConsultation, duplicate_key_text
from tsunagu_intake.domain.screening import UnknownCue, charts, suggest
from tsunagu_outbox import append
from tsunagu_servicehost.errors import Refused


@dataclass
class Registered:
    case_id: UUID
    consultation_id: UUID
    person_ref: UUID
    consent_ids: list[UUID] = field(default_factory=list)
    possible_duplicates: list[UUID] = field(default_factory=list)


def check_screening(cmd: RegisterConsultation) -> None:
    if cmd.screening is None:
        return
    chart = charts().get(cmd.screening.chart_version)
    if chart is None:
        raise Refused.invalid("screening.chart_version", "この版の相談チャートはありません。",
                              f"no screening chart version {cmd.screening.chart_version}")
    try:
        suggested = {s.need for s in suggest(chart, cmd.screening.cues)}
    except UnknownCue as exc:
        raise Refused.invalid("screening.cues", "相談チャートにない気づきが含まれています。", str(exc)) from None
    extra = [n.value for n in cmd.screening.confirmed if n not in suggested]
    if extra:
        raise Refused.invalid("screening.confirmed", "チャートが提案していない課題が「確認済み」になっています。",
                              f"not suggested by the chart for these cues: {', '.join(extra)}")


async def register_consultation(conn: asyncpg.Connection, cmd: RegisterConsultation, *,
                                cipher: PersonalDataCipher, staff: str, municipality_code: str,
                                now: datetime) -> Registered:
    check_screening(cmd)
    duplicates: list[UUID] = []
    if cmd.person_ref is not None:
        person_ref = cmd.person_ref
        if not await conn.fetchval("SELECT 1 FROM persons WHERE person_ref = $1", person_ref):
            raise Refused.invalid("person_ref", "この相談者は登録されていません。", "unknown person_ref")
    else:
        person_ref = uuid7()
        key = cipher.blind_index(duplicate_key_text(cmd.person))
        duplicates = [r["person_ref"] for r in await conn.fetch(
            "SELECT person_ref FROM persons WHERE duplicate_key = $1 ORDER BY registered_at", key)]
        await conn.execute("INSERT INTO persons (person_ref, details, duplicate_key) VALUES ($1, $2, $3)",
                           person_ref, cipher.seal(cmd.person.model_dump(mode="json")), key)

    case_id = await conn.fetchval(
        "SELECT case_id FROM cases WHERE person_ref = $1 AND closed_at IS NULL ORDER BY opened_at DESC LIMIT 1",
        person_ref)
    if case_id is None:
        case_id = uuid7()
        await conn.execute("INSERT INTO cases (case_id, person_ref, municipality_code, opened_at) "
                           "VALUES ($1, $2, $3, $4)", case_id, person_ref, municipality_code, now)

    consultation_id = uuid7()
    screening = cmd.screening
    await conn.execute(
        "INSERT INTO consultations (consultation_id, case_id, counter, channel, urgency, needs, primary_need, "
        "chart_version, cues, confirmed, notes, registered_by, registered_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        consultation_id, case_id, cmd.counter.value, cmd.channel.value, cmd.urgency.value,
        [n.value for n in cmd.needs], cmd.primary_need.value, screening.chart_version if screening else None,
        screening.cues if screening else [], [n.value for n in screening.confirmed] if screening else [],
        cipher.seal_text(cmd.notes) if cmd.notes else None, staff, now)

    base = {"case_id": case_id, "municipality_code": municipality_code, "occurred_at": now}
    registered_event = ConsultationRegistered(
        **base, consultation_id=consultation_id, person_ref=person_ref, counter=cmd.counter, channel=cmd.channel,
        urgency=cmd.urgency, needs=tuple(cmd.needs), primary_need=cmd.primary_need,
        screening_chart_version=screening.chart_version if screening else None,
        known_person=cmd.person_ref is not None)
    # Consent goes first: whoever may see the case learns so before the consultation arrives.
    events: list = []
    registered = Registered(case_id, consultation_id, person_ref, possible_duplicates=duplicates)
    for consent in cmd.consents:
        consent_id = uuid7()
        await conn.execute(
            "INSERT INTO consents (consent_id, case_id, person_ref, recipient, purpose, method, valid_until, "
            "granted_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)",
            consent_id, case_id, person_ref, consent.recipient.model_dump_json(exclude_none=True),
            consent.purpose.value, consent.method.value, consent.valid_until, now)
        events.append(ConsentGranted(**base, consent_id=consent_id, person_ref=person_ref,
                                     recipient=consent.recipient, purpose=consent.purpose, method=consent.method,
                                     valid_until=consent.valid_until))
        registered.consent_ids.append(consent_id)
    await append(conn, *events, registered_event)
    return registered


async def identify_need(conn: asyncpg.Connection, case_id: UUID, need: NeedCategory, identified_by: Division, *,
                        via_screening: bool, now: datetime) -> None:
    case = await conn.fetchrow("SELECT municipality_code, closed_at FROM cases WHERE case_id = $1 FOR UPDATE",
                               case_id)
    if case is None:
        raise Refused.not_found("相談", "case")
    if case["closed_at"] is not None:
        raise Refused.conflict("終了した相談には課題を追加できません。", "the case is closed")
    consultation_id = await conn.fetchval(
        "SELECT consultation_id FROM consultations WHERE case_id = $1 ORDER BY registered_at DESC LIMIT 1", case_id)
    await conn.execute("UPDATE consultations SET needs = array_append(needs, $2) "
                       "WHERE consultation_id = $1 AND NOT ($2 = ANY(needs))", consultation_id, need.value)
    await append(conn, NeedIdentified(case_id=case_id, municipality_code=case["municipality_code"], occurred_at=now,
                                      consultation_id=consultation_id, need=need, identified_by=identified_by,
                                      via_screening=via_screening))
