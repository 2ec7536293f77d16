"""What intake's handlers read back from storage: a case and a consent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import ConsentPurpose


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
