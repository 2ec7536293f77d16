"""A case's つなぐシート and its referrals, as the handlers see them (the repository maps the rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import (
    CaseClosureReason, ContactMethod, DeclineReason, NeedCategory, ReferralOutcome, Urgency,
)
from tsunagu_referral.domain.referral import Status


@dataclass(frozen=True)
class Policy:
    accept_business_days: int = 3
    contact_days: int = 14


@dataclass(frozen=True)
class Detail:
    """What an action needs besides itself: a decline reason, a contact method, an outcome, a new recipient."""

    reason: DeclineReason | None = None
    method: ContactMethod | None = None
    outcome: ReferralOutcome | None = None
    recipient: Recipient | None = None


@dataclass(frozen=True)
class Sheet:
    sheet_id: UUID
    case_id: UUID
    person_ref: UUID
    municipality_code: str
    needs: list[str]
    primary_need: NeedCategory
    urgency: Urgency
    opened_at: datetime
    closed_at: datetime | None = None
    closure_reason: CaseClosureReason | None = None
    last_contact_at: datetime | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


@dataclass(frozen=True)
class Referral:
    referral_id: UUID
    case_id: UUID
    sheet_id: UUID
    need: NeedCategory
    recipient: Recipient
    candidate_rank: int
    status: Status
    urgency: Urgency
    accept_by: datetime
    requested_at: datetime
    updated_at: datetime
    overdue_at: datetime | None = None
    decline_reason: str | None = None
    contact_method: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Silence:
    """An open case nobody has reached for too long, as the contact timer finds it."""

    case_id: UUID
    municipality_code: str
    last_contact_at: datetime | None
    silent_since: datetime
