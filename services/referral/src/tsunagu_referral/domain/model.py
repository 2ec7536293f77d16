"""A case's つなぐシート and its referrals, as the handlers see them (the repository maps the rows)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import (
    CaseClosureReason, ContactMethod, DeclineReason, Division, FollowUpOutcome, NeedCategory, ReferralOutcome,
    RerouteReason, Urgency,
)
from tsunagu_referral.domain.referral import Status
from tsunagu_referral.domain.routing import DEFAULT_ROUTES


def default_follow_up_days() -> dict[NeedCategory, int]:
    """Business days from acceptance (or completion) to the follow-up, per need, from routes.json."""
    days = json.loads(DEFAULT_ROUTES.read_text())["follow_up_business_days"]
    return {need: int(days.get(need.value, days["default"])) for need in NeedCategory}


@dataclass(frozen=True)
class Policy:
    accept_business_days: int = 3
    contact_days: int = 14
    follow_up_business_days: Mapping[NeedCategory, int] = field(default_factory=default_follow_up_days)
    follow_up_answer_business_days: int = 5
    """Business days a due follow-up may wait for its answer before it is listed as overdue."""


@dataclass(frozen=True)
class Detail:
    """What an action needs besides itself: a decline reason, a contact method, an outcome, a new recipient."""

    reason: DeclineReason | None = None
    method: ContactMethod | None = None
    outcome: ReferralOutcome | None = None
    recipient: Recipient | None = None
    why: RerouteReason | None = None


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
    counter: Division | None = None
    """The counter that registered the case; unknown for sheets opened before it was kept."""

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


@dataclass(frozen=True)
class FollowUp:
    """Asking the person, some business days after a referral was accepted or completed, whether
    the help arrived. Scheduled until `opened_at`; then due, and overdue after `answer_by`."""

    follow_up_id: UUID
    referral_id: UUID
    case_id: UUID
    need: NeedCategory
    counter: Division
    due_on: date
    answer_by: datetime
    opened_at: datetime | None = None
    outcome: FollowUpOutcome | None = None
    answered_at: datetime | None = None
    reopened_referral_id: UUID | None = None

    def state(self, now: datetime) -> str:
        if self.answered_at is not None:
            return "answered"
        if self.opened_at is None:
            return "scheduled"
        return "overdue" if now > self.answer_by else "due"
