"""Every SQL statement of intake, over one asyncpg connection inside the caller's transaction.

Concurrency rules, stated once here and beside each statement that needs one:

- A case's row lock (`case(..., lock=True)`, `open_case_of(..., lock=True)`) serialises what changes
  one case: a consultation joining it, a need added to its latest consultation, a consent granted
  on it, and its closing and reopening by the referral consumer (an UPDATE, which takes the same
  lock). So nothing is added to a case the consumer has just closed: whoever waits re-reads it. It
  is FOR NO KEY UPDATE, not FOR UPDATE: consultations and consents inserted by other requests take
  a key-share lock on their case for the foreign key, and need not wait.
- A known person's row lock (`person_exists(..., lock=True)`) serialises registrations for one
  person, so two at once do not both find no open case and open two. FOR NO KEY UPDATE as well,
  for the same reason. A new person is a new row no one else can race on.
- The duplicate check (`persons_with_duplicate_key`) is a hint for staff, not a rule: no lock, and
  two registrations of the same person at the same moment may both be told of no duplicate.
- A consent's row lock (`consent(..., lock=True)`) makes two withdrawals at once one withdrawal and
  one conflict.
- A statutory basis is recorded under its case's row lock, like a consent (so never on a case closed
  meanwhile); its row lock (`statutory_basis(..., lock=True)`) makes two endings at once one ending
  and one conflict: the second waits, then reads `ended_at`. Its grants are written once, with it,
  and never change.
- An Idempotency-Key is claimed by the primary key of `idempotency_keys` (principal, key): a
  concurrent retry's insert waits for the first request's transaction, then finds its answer.
- A provision reads the consent or statutory basis grant it rests on FOR SHARE, and records itself in
  the same transaction (`grant_to_partner`, `record_provision`). A withdrawal or an ending locks that
  row FOR UPDATE, so the two are ordered: a withdrawal that committed first leaves nothing to share
  (the re-read row no longer matches), one that comes second waits until the provision is recorded.
- `case_referrals` has a single writer, the consumer of the referral service's events: one record
  at a time per partition, in order per case; redeliveries stop at `applied_events`, and the
  primary key on referral_id makes a repeated request insert nothing.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import ConsentPurpose, LegalBasis, NeedCategory
from tsunagu_intake.domain.commands import ConsentRequest, RegisterConsultation
from tsunagu_intake.domain.model import Case, Consent, Grant, StatutoryBasis
from tsunagu_outbox import UnitOfWork
from tsunagu_outbox import unit_of_work as outbox_unit_of_work

LOCK = " FOR NO KEY UPDATE"
"""A case's or person's row lock: excludes other changes to it, admits the key-share locks of rows referring to it."""

MAX_POSSIBLE_DUPLICATES = 20
"""Persons the duplicate hint names at most: enough for staff to check by hand, and a registration
costs the same however many share a kana name and birth date."""


_POSSIBLE_DUPLICATES = "SELECT person_ref FROM persons WHERE duplicate_key = {key} ORDER BY registered_at LIMIT {limit}"
"""The persons registered with a duplicate key, oldest first, for the hint (parameters named by the caller)."""


class Repository:
    """The intake tables, read and written inside the caller's transaction."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # persons ----------------------------------------------------------------------------------

    async def person_exists(self, person_ref: UUID, *, lock: bool = False) -> bool:
        # lock=True: registrations for one known person run one after the other (rule at the top).
        return bool(await self.conn.fetchval(
            f"SELECT true FROM persons WHERE person_ref = $1{LOCK if lock else ''}", person_ref))

    async def persons_with_duplicate_key(self, duplicate_key: bytes) -> list[UUID]:
        """The first MAX_POSSIBLE_DUPLICATES persons registered with the key, oldest first."""
        # A hint, not a rule: no lock (rule at the top).
        rows = await self.conn.fetch(_POSSIBLE_DUPLICATES.format(key="$1", limit="$2"), duplicate_key,
                                     MAX_POSSIBLE_DUPLICATES)
        return [r["person_ref"] for r in rows]

    async def add_person(self, person_ref: UUID, details: bytes, duplicate_key: bytes) -> list[UUID]:
        """Register a new person; the persons registered before with the same key, as
        `persons_with_duplicate_key` reads them (the insert and the read in one statement: the read
        sees the table as it was before the insert)."""
        # A hint, not a rule: no lock (rule at the top).
        rows = await self.conn.fetch(
            "WITH added AS (INSERT INTO persons (person_ref, details, duplicate_key) VALUES ($1, $2, $3)) "
            + _POSSIBLE_DUPLICATES.format(key="$3", limit="$4"), person_ref, details, duplicate_key,
            MAX_POSSIBLE_DUPLICATES)
        return [r["person_ref"] for r in rows]

    # cases ------------------------------------------------------------------------------------

    async def case(self, case_id: UUID, *, lock: bool = False) -> Case | None:
        # lock=True: the case's row lock serialises every change to it, closing included (rule at the top).
        row = await self.conn.fetchrow(
            "SELECT case_id, person_ref, municipality_code, closed_at FROM cases "
            f"WHERE case_id = $1{LOCK if lock else ''}", case_id)
        return Case(row["case_id"], row["person_ref"], row["municipality_code"], row["closed_at"]) if row else None

    async def open_case_of(self, person_ref: UUID, *, lock: bool = False) -> UUID | None:
        """The person's newest open case. Locked, a case closed meanwhile is re-read and passed over."""
        return await self.conn.fetchval(
            "SELECT case_id FROM cases WHERE person_ref = $1 AND closed_at IS NULL ORDER BY opened_at DESC LIMIT 1"
            f"{LOCK if lock else ''}", person_ref)

    async def open_case(self, case: Case, *, at: datetime) -> None:
        await self.conn.execute("INSERT INTO cases (case_id, person_ref, municipality_code, opened_at) "
                                "VALUES ($1, $2, $3, $4)", case.case_id, case.person_ref, case.municipality_code, at)

    async def close_case(self, case_id: UUID, *, at: datetime, reason: str) -> None:
        # The UPDATE takes the case's row lock: it waits for a request changing the case (rule at the top).
        await self.conn.execute(
            "UPDATE cases SET closed_at = $2, closure_reason = $3 WHERE case_id = $1 AND closed_at IS NULL",
            case_id, at, reason)

    async def reopen_case(self, case_id: UUID) -> None:
        await self.conn.execute("UPDATE cases SET closed_at = NULL, closure_reason = NULL WHERE case_id = $1",
                                case_id)

    # consultations ----------------------------------------------------------------------------

    async def add_consultation(self, consultation_id: UUID, case_id: UUID, cmd: RegisterConsultation, *,
                               notes: bytes | None, by: str, at: datetime) -> None:
        screening = cmd.screening
        await self.conn.execute(
            "INSERT INTO consultations (consultation_id, case_id, counter, channel, urgency, needs, primary_need, "
            "chart_version, cues, confirmed, notes, registered_by, registered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            consultation_id, case_id, cmd.counter.value, cmd.channel.value, cmd.urgency.value,
            [n.value for n in cmd.needs], cmd.primary_need.value, screening.chart_version if screening else None,
            screening.cues if screening else [], [n.value for n in screening.confirmed] if screening else [],
            notes, by, at)

    async def latest_consultation_id(self, case_id: UUID) -> UUID | None:
        return await self.conn.fetchval(
            "SELECT consultation_id FROM consultations WHERE case_id = $1 ORDER BY registered_at DESC LIMIT 1",
            case_id)

    async def add_need(self, consultation_id: UUID, need: NeedCategory) -> None:
        """Add the need to the consultation unless it is there; the caller holds the case's row lock."""
        await self.conn.execute("UPDATE consultations SET needs = array_append(needs, $2) "
                                "WHERE consultation_id = $1 AND NOT ($2 = ANY(needs))", consultation_id, need.value)

    # consents ---------------------------------------------------------------------------------

    async def add_consent(self, consent_id: UUID, case_id: UUID, person_ref: UUID, consent: ConsentRequest, *,
                          at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO consents (consent_id, case_id, person_ref, recipient, purpose, method, valid_until, "
            "granted_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)",
            consent_id, case_id, person_ref, consent.recipient.model_dump_json(exclude_none=True),
            consent.purpose.value, consent.method.value, consent.valid_until, at)

    async def consent(self, consent_id: UUID, *, lock: bool = False) -> Consent | None:
        # lock=True: of two withdrawals at once, the second waits and finds the first (rule at the top).
        row = await self.conn.fetchrow(
            "SELECT c.consent_id, c.case_id, c.person_ref, c.recipient, c.purpose, c.withdrawn_at, "
            "k.municipality_code FROM consents c JOIN cases k USING (case_id) WHERE consent_id = $1"
            f"{' FOR UPDATE OF c' if lock else ''}", consent_id)
        if row is None:
            return None
        return Consent(row["consent_id"], row["case_id"], row["person_ref"], row["municipality_code"],
                       Recipient.model_validate(json.loads(row["recipient"])), ConsentPurpose(row["purpose"]),
                       row["withdrawn_at"])

    async def withdraw_consent(self, consent_id: UUID, *, at: datetime) -> None:
        await self.conn.execute("UPDATE consents SET withdrawn_at = $2 WHERE consent_id = $1", consent_id, at)

    # statutory bases --------------------------------------------------------------------------

    async def add_statutory_basis(self, basis: StatutoryBasis, *, by: str, at: datetime) -> None:
        """Insert a basis and its grants; the caller holds the case's row lock (rule at the top)."""
        members = list(dict.fromkeys(g.recipient for g in basis.grants))
        purposes = list(dict.fromkeys(g.purpose.value for g in basis.grants))
        await self.conn.execute(
            "INSERT INTO statutory_bases (basis_id, case_id, person_ref, basis, held_on, valid_until, members, "
            "purposes, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)",
            basis.basis_id, basis.case_id, basis.person_ref, basis.basis.value, basis.held_on, basis.valid_until,
            json.dumps([m.model_dump(mode="json", exclude_none=True) for m in members]), purposes, by, at)
        await self.conn.executemany(
            "INSERT INTO statutory_basis_grants (grant_id, basis_id, recipient, purpose) VALUES ($1, $2, $3::jsonb, $4)",
            [(g.grant_id, basis.basis_id, g.recipient.model_dump_json(exclude_none=True), g.purpose.value)
             for g in basis.grants])

    async def statutory_basis(self, basis_id: UUID, *, lock: bool = False) -> StatutoryBasis | None:
        # lock=True: of two endings at once, the second waits and finds the first (rule at the top).
        row = await self.conn.fetchrow(
            "SELECT b.*, k.municipality_code FROM statutory_bases b JOIN cases k USING (case_id) "
            f"WHERE basis_id = $1{' FOR UPDATE OF b' if lock else ''}", basis_id)
        if row is None:
            return None
        grants = await self.conn.fetch("SELECT grant_id, recipient, purpose FROM statutory_basis_grants "
                                       "WHERE basis_id = $1 ORDER BY grant_id", basis_id)
        return StatutoryBasis(
            row["basis_id"], row["case_id"], row["person_ref"], row["municipality_code"], LegalBasis(row["basis"]),
            row["held_on"], row["valid_until"],
            tuple(Grant(g["grant_id"], Recipient.model_validate(json.loads(g["recipient"])),
                        ConsentPurpose(g["purpose"])) for g in grants), row["ended_at"])

    async def end_statutory_basis(self, basis_id: UUID, *, by: str, at: datetime) -> None:
        """End a basis the caller holds locked (rule at the top)."""
        await self.conn.execute("UPDATE statutory_bases SET ended_at = $2, ended_by = $3 WHERE basis_id = $1",
                                basis_id, at, by)

    # the case's view of its referrals (single writer: the referral consumer, rule at the top) -----

    async def remember_referral(self, referral_id: UUID, case_id: UUID, need: NeedCategory,
                                recipient: Recipient, *, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO case_referrals (referral_id, case_id, need, recipient, status, updated_at) "
            "VALUES ($1, $2, $3, $4::jsonb, 'requested', $5) ON CONFLICT (referral_id) DO NOTHING",
            referral_id, case_id, need.value, recipient.model_dump_json(exclude_none=True), at)

    async def set_referral_status(self, referral_id: UUID, status: str, *, at: datetime) -> None:
        # A decline is followed by a reroute of the same referral: the referral stays "declined".
        await self.conn.execute("UPDATE case_referrals SET status = $2, updated_at = $3 WHERE referral_id = $1 "
                                "AND NOT (status = 'declined' AND $2 = 'rerouted')", referral_id, status, at)

    async def mark_referral_overdue(self, referral_id: UUID) -> None:
        await self.conn.execute("UPDATE case_referrals SET overdue = true WHERE referral_id = $1", referral_id)

    # idempotency keys -------------------------------------------------------------------------

    async def claim_idempotency_key(self, principal: str, key: str, request_hash: bytes) -> bool:
        """True when this request claimed the key. The primary key decides: a concurrent claim of the
        same key waits for the first request's transaction (rule at the top)."""
        return bool(await self.conn.fetchval(
            "INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true", principal, key, request_hash))

    async def idempotent_answer(self, principal: str, key: str) -> tuple[bytes, int, dict]:
        """The claimed key's request hash, and the status and body it was answered with."""
        row = await self.conn.fetchrow("SELECT request_hash, status, response FROM idempotency_keys "
                                       "WHERE principal = $1 AND key = $2", principal, key)
        return bytes(row["request_hash"]), row["status"], json.loads(row["response"])

    async def record_idempotent_answer(self, principal: str, key: str, status: int, body: dict) -> None:
        await self.conn.execute("UPDATE idempotency_keys SET status = $3, response = $4::jsonb "
                                "WHERE principal = $1 AND key = $2", principal, key, status, json.dumps(body))

    # reads for HTTP answers -------------------------------------------------------------------

    async def case_record(self, case_id: UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)

    async def consultations_of(self, case_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT consultation_id, counter, channel, urgency, needs, primary_need, chart_version, confirmed, "
            "registered_at FROM consultations WHERE case_id = $1 ORDER BY registered_at", case_id)

    async def consents_of(self, case_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT consent_id, recipient, purpose, method, valid_until, granted_at, "
                                     "withdrawn_at FROM consents WHERE case_id = $1 ORDER BY granted_at", case_id)

    async def statutory_bases_of(self, case_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT basis_id, basis, held_on, valid_until, members, purposes, recorded_at, ended_at "
            "FROM statutory_bases WHERE case_id = $1 ORDER BY recorded_at", case_id)

    async def referrals_of(self, case_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT referral_id, need, recipient, status, overdue, updated_at "
                                     "FROM case_referrals WHERE case_id = $1 ORDER BY updated_at", case_id)

    async def person_of_case(self, case_id: UUID) -> asyncpg.Record | None:
        """The case's person: its ref and encrypted details."""
        return await self.conn.fetchrow("SELECT p.person_ref, p.details FROM cases c JOIN persons p "
                                        "USING (person_ref) WHERE c.case_id = $1", case_id)

    async def grant_to_partner(self, case_id: UUID, partner_id: UUID, purpose: str, today: date
                               ) -> asyncpg.Record | None:
        """The active consent, or else statutory basis grant, that lets `partner_id` receive the case's
        details for `purpose`: (grant_id, basis). FOR SHARE against a withdrawal or ending at the same
        moment (rule at the top)."""
        recipient = json.dumps({"kind": "partner", "partner_id": str(partner_id)})
        consent = await self.conn.fetchrow(
            "SELECT consent_id AS grant_id, 'consent' AS basis FROM consents WHERE case_id = $1 "
            "AND recipient = $2::jsonb AND purpose = $3 AND withdrawn_at IS NULL "
            "AND (valid_until IS NULL OR valid_until >= $4) ORDER BY granted_at LIMIT 1 FOR SHARE",
            case_id, recipient, purpose, today)
        if consent is not None:
            return consent
        return await self.conn.fetchrow(
            "SELECT g.grant_id, b.basis FROM statutory_basis_grants g JOIN statutory_bases b USING (basis_id) "
            "WHERE b.case_id = $1 AND g.recipient = $2::jsonb AND g.purpose = $3 AND b.ended_at IS NULL "
            "AND b.held_on <= $4 AND b.valid_until >= $4 ORDER BY b.recorded_at LIMIT 1 FOR SHARE OF b",
            case_id, recipient, purpose, today)

    async def record_provision(self, provision_id: UUID, case_id: UUID, person_ref: UUID, *, requested_by: str,
                               partner_id: UUID, purpose: str, items: list[str], basis: str, grant_id: UUID,
                               at: datetime) -> None:
        """Insert-only; in the transaction that read the grant (rule at the top)."""
        await self.conn.execute(
            "INSERT INTO provisions (provision_id, case_id, person_ref, requested_by, partner_id, purpose, items, "
            "basis, grant_id, provided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            provision_id, case_id, person_ref, requested_by, partner_id, purpose, items, basis, grant_id, at)

    async def provisions_of(self, case_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT provision_id, requested_by, partner_id, purpose, items, basis, grant_id, provided_at FROM provisions "
            "WHERE case_id = $1 ORDER BY provided_at", case_id)

    async def latest_consultation(self, case_id: UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT needs, primary_need, urgency, notes FROM consultations "
                                        "WHERE case_id = $1 ORDER BY registered_at DESC LIMIT 1", case_id)


def unit_of_work(pool: asyncpg.Pool) -> AbstractAsyncContextManager[UnitOfWork[Repository]]:
    """A new transaction over the intake tables; committed with its events when the block ends."""
    return outbox_unit_of_work(pool, Repository)
