"""What intake's handlers read back from storage: a case, a consent and a statutory basis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import ConsentPurpose, LegalBasis


@dataclass(frozen=True)
class Case:
    case_id: UUID
    person_ref: UUID
    municipality_code: str
    closed_at: datetime | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


@dataclass(frozen=True)
class Consent:
    consent_id: UUID
    case_id: UUID
    person_ref: UUID
    municipality_code: str
    recipient: Recipient
    purpose: ConsentPurpose
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class Grant:
    """One member and one purpose of a statutory basis: what its events name."""

    grant_id: UUID
    recipient: Recipient
    purpose: ConsentPurpose


@dataclass(frozen=True)
class StatutoryBasis:
    basis_id: UUID
    case_id: UUID
    person_ref: UUID
    municipality_code: str
    basis: LegalBasis
    held_on: date
    valid_until: date
    grants: tuple[Grant, ...]
    ended_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None
