"""Consent per recipient and purpose: granted and withdrawn, each change an event."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import ConsentGranted, ConsentWithdrawn, Recipient, uuid7
from tsunagu_intake.domain.commands import ConsentRequest
from tsunagu_outbox import append
from tsunagu_servicehost.errors import Refused


async def grant_consent(conn: asyncpg.Connection, case_id: UUID, cmd: ConsentRequest, *, now: datetime) -> UUID:
    case = await conn.fetchrow("SELECT person_ref, municipality_code, closed_at FROM cases WHERE case_id = $1",
                               case_id)
    if case is None:
        raise Refused.not_found("相談", "case")
    if case["closed_at"] is not None:
        raise Refused.conflict("終了した相談には同意を記録できません。", "the case is closed")
    consent_id = uuid7()
    await conn.execute(
        "INSERT INTO consents (consent_id, case_id, person_ref, recipient, purpose, method, valid_until, granted_at) "
        "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)", consent_id, case_id, case["person_ref"],
        cmd.recipient.model_dump_json(exclude_none=True), cmd.purpose.value, cmd.method.value, cmd.valid_until, now)
    await append(conn, ConsentGranted(case_id=case_id, municipality_code=case["municipality_code"], occurred_at=now,
                                      consent_id=consent_id, person_ref=case["person_ref"], recipient=cmd.recipient,
                                      purpose=cmd.purpose, method=cmd.method, valid_until=cmd.valid_until))
    return consent_id


async def withdraw_consent(conn: asyncpg.Connection, consent_id: UUID, *, now: datetime) -> None:
    row = await conn.fetchrow(
        "SELECT c.case_id, c.person_ref, c.recipient, c.purpose, c.withdrawn_at, k.municipality_code "
        "FROM consents c JOIN cases k USING (case_id) WHERE consent_id = $1 FOR UPDATE OF c", consent_id)
    if row is None:
        raise Refused.not_found("同意", "consent")
    if row["withdrawn_at"] is not None:
        raise Refused.conflict("この同意はすでに撤回されています。", "the consent was already withdrawn")
    await conn.execute("UPDATE consents SET withdrawn_at = $2 WHERE consent_id = $1", consent_id, now)
    await append(conn, ConsentWithdrawn(
        case_id=row["case_id"], municipality_code=row["municipality_code"], occurred_at=now, consent_id=consent_id,
        person_ref=row["person_ref"], recipient=Recipient.model_validate(json.loads(row["recipient"])),
        purpose=row["purpose"]))
