"""Fakes the partner handlers run on in unit tests: in-memory referrals, permissions and published
events, with the same methods as the adapters over PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

import pytest


@dataclass
class Grant:
    grant_id: int
    case_id: UUID
    partner_id: UUID
    basis: str
    purpose: str
    valid_until: date | None = None
    revoked: bool = False

    def valid_on(self, today: date) -> bool:
        return not self.revoked and (self.valid_until is None or self.valid_until >= today)


@dataclass
class FakePartnerStore:
    """adapters.access.PartnerAccess and adapters.referrals.Referrals, in memory."""

    referrals: dict[UUID, dict] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    responses: list[tuple] = field(default_factory=list)
    published: list = field(default_factory=list)

    def add_referral(self, referral_id: UUID, partner_id: UUID, case_id: UUID, *, need: str = "housing",
                     status: str = "requested") -> None:
        self.referrals[referral_id] = {"partner_id": partner_id, "case_id": case_id, "municipality_code": "142166",
                                       "need": need, "status": status}

    def add_grant(self, case_id: UUID, partner_id: UUID, basis: str, purpose: str, **kwargs) -> Grant:
        grant = Grant(len(self.grants) + 1, case_id, partner_id, basis, purpose, **kwargs)
        self.grants.append(grant)
        return grant

    # PartnerAccess

    async def referral(self, partner_id, referral_id):
        row = self.referrals.get(referral_id)
        return row if row is not None and row["partner_id"] == partner_id else None

    async def grant(self, case_id, partner_id, today, purposes, preferred_purpose):
        fitting = [g for g in self.grants if g.case_id == case_id and g.partner_id == partner_id
                   and g.valid_on(today) and (g.basis != "consent" or g.purpose in purposes)]
        fitting.sort(key=lambda g: (g.basis != "consent", g.purpose == preferred_purpose, g.grant_id))
        return {"basis": fitting[0].basis, "purpose": fitting[0].purpose} if fitting else None

    async def other_purposes(self, case_id, partner_id, today):
        purposes = sorted({g.purpose for g in self.grants if g.case_id == case_id and g.partner_id == partner_id
                           and g.valid_on(today)})
        return purposes or None

    # Referrals

    async def lock_status(self, referral_id, partner_id=None):
        row = self.referrals.get(referral_id)
        return row["status"] if row is not None and partner_id in (None, row["partner_id"]) else None

    async def set_status(self, referral_id, status, at):
        self.referrals[referral_id]["status"] = status

    async def record_response(self, response_id, partner_id, referral_id, response, at):
        self.responses.append((response_id, partner_id, referral_id, response))

    # the outbox

    async def publish(self, event) -> None:
        self.published.append(event)


@pytest.fixture
def store() -> FakePartnerStore:
    return FakePartnerStore()
