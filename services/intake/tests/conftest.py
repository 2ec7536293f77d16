"""Fakes the handlers run on in unit tests: an in-memory repository and unit of work with the same
methods as the PostgreSQL ones, and a cipher that only marks what it would encrypt."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tsunagu_teststack.fakes import FakeUnitOfWork

from tsunagu_intake.domain.model import Consent


class FakeRepository:
    def __init__(self):
        self.persons, self.cases, self.consultations, self.consents = {}, {}, {}, {}
        self.referrals, self.idempotency_keys, self.statutory_bases = {}, {}, {}

    # persons
    async def person_exists(self, person_ref, *, lock=False):
        return person_ref in self.persons

    async def persons_with_duplicate_key(self, duplicate_key):
        return [ref for ref, p in self.persons.items() if p["duplicate_key"] == duplicate_key]

    async def add_person(self, person_ref, details, duplicate_key):
        before = await self.persons_with_duplicate_key(duplicate_key)
        self.persons[person_ref] = {"details": details, "duplicate_key": duplicate_key}
        return before

    # cases
    async def case(self, case_id, *, lock=False):
        return self.cases.get(case_id)

    async def open_case_of(self, person_ref, *, lock=False):
        open_cases = [c.case_id for c in self.cases.values() if c.person_ref == person_ref and not c.closed]
        return open_cases[-1] if open_cases else None

    async def open_case(self, case, *, at):
        self.cases[case.case_id] = case

    async def close_case(self, case_id, *, at, reason):
        if not self.cases[case_id].closed:
            self.cases[case_id] = replace(self.cases[case_id], closed_at=at)

    async def reopen_case(self, case_id):
        self.cases[case_id] = replace(self.cases[case_id], closed_at=None)

    # consultations
    async def add_consultation(self, consultation_id, case_id, cmd, *, notes, by, at):
        self.consultations[consultation_id] = {"case_id": case_id, "needs": [n.value for n in cmd.needs],
                                               "notes": notes, "by": by}

    async def latest_consultation_id(self, case_id):
        ids = [i for i, c in self.consultations.items() if c["case_id"] == case_id]
        return ids[-1] if ids else None

    async def add_need(self, consultation_id, need):
        needs = self.consultations[consultation_id]["needs"]
        if need.value not in needs:
            needs.append(need.value)

    # consents
    async def add_consent(self, consent_id, case_id, person_ref, consent, *, at):
        case = self.cases[case_id]
        self.consents[consent_id] = Consent(consent_id, case_id, person_ref, case.municipality_code,
                                            consent.recipient, consent.purpose)

    async def consent(self, consent_id, *, lock=False):
        return self.consents.get(consent_id)

    async def withdraw_consent(self, consent_id, *, at):
        self.consents[consent_id] = replace(self.consents[consent_id], withdrawn_at=at)

    # statutory bases
    async def add_statutory_basis(self, basis, *, by, at):
        self.statutory_bases[basis.basis_id] = basis

    async def statutory_basis(self, basis_id, *, lock=False):
        return self.statutory_bases.get(basis_id)

    async def end_statutory_basis(self, basis_id, *, by, at):
        self.statutory_bases[basis_id] = replace(self.statutory_bases[basis_id], ended_at=at)

    # the case's view of its referrals
    async def remember_referral(self, referral_id, case_id, need, recipient, *, at):
        self.referrals.setdefault(referral_id, {"case_id": case_id, "need": need, "status": "requested",
                                                "overdue": False})

    async def set_referral_status(self, referral_id, status, *, at):
        referral = self.referrals.get(referral_id)
        if referral and not (referral["status"] == "declined" and status == "rerouted"):
            referral["status"] = status

    async def mark_referral_overdue(self, referral_id):
        if referral_id in self.referrals:
            self.referrals[referral_id]["overdue"] = True

    # idempotency keys
    async def claim_idempotency_key(self, principal, key, request_hash):
        if (principal, key) in self.idempotency_keys:
            return False
        self.idempotency_keys[(principal, key)] = [request_hash, None, None]
        return True

    async def idempotent_answer(self, principal, key):
        return tuple(self.idempotency_keys[(principal, key)])

    async def record_idempotent_answer(self, principal, key, status, body):
        self.idempotency_keys[(principal, key)][1:] = [status, body]




class FakeCipher:
    """Marks what the real cipher would encrypt; the blind index is the normalised text itself."""

    def seal(self, data: dict) -> bytes:
        return b"sealed:" + repr(data).encode()

    def seal_text(self, text: str) -> bytes:
        return b"sealed:" + text.encode()

    def blind_index(self, text: str) -> bytes:
        return text.encode()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(FakeRepository())


@pytest.fixture
def cipher() -> FakeCipher:
    return FakeCipher()

