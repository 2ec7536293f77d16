"""What housing support keeps: supports, their tenancies, check-in rules, and who acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import CheckInKind, TenancyStage
from tsunagu_housing.domain.schedule import CheckInRule


@dataclass(frozen=True)
class Case:
    """A case as referral announced it: pseudonymous ids only."""

    case_id: UUID
    person_ref: UUID
    municipality_code: str


@dataclass(frozen=True)
class Support:
    support_id: UUID
    case_id: UUID
    person_ref: UUID
    municipality_code: str
    referral_id: UUID | None
    referred_at: datetime | None
    stage: TenancyStage
    stage_since: datetime
    lead_member_id: UUID
    opened_at: datetime


@dataclass(frozen=True)
class Tenancy:
    tenancy_id: UUID
    support_id: UUID
    moved_in_on: date
    ended_on: date | None


@dataclass(frozen=True)
class ScheduledRule:
    """A check-in rule of one support, with its cursor (`due_at`: None once a finite rule is spent)."""

    rule_id: UUID
    support_id: UUID
    rule: CheckInRule
    due_at: datetime | None

    @property
    def kind(self) -> CheckInKind:
        return self.rule.kind


@dataclass(frozen=True)
class DueRule:
    """A rule whose cursor's grace has passed, with what a CheckInMissed needs to say."""

    scheduled: ScheduledRule
    case_id: UUID
    municipality_code: str
    tenancy_id: UUID
    lead_member_id: UUID
    lead: Recipient


@dataclass(frozen=True)
class Actor:
    """Who asks: a council member of staff, a coordinator, or a partner organisation by its token."""

    subject: str
    role: str
    partner_id: UUID | None = None

    @property
    def is_partner(self) -> bool:
        return self.partner_id is not None


def grace(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)
