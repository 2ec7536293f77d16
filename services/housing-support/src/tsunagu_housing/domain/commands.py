"""What the council sends to housing support, validated before anything is stored."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tsunagu_contracts import Recipient
from tsunagu_contracts.dates import CalendarDate, Moment
from tsunagu_contracts.codes import (
    CheckInKind, CheckInResult, Division, HousingRole, RecipientKind, TenancyEndReason, TenancyStage,
)
from tsunagu_housing.domain.schedule import CheckInRule, InvalidSchedule, parse

PARTNER_EXAMPLE = "0192f0c1-7a2e-7cc3-9a41-00000000b001"
MEMBER_EXAMPLE = "0192f0c1-7a2e-7cc3-9a41-00000000c001"


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterMember(Command):
    """A council member: a city division (by its code) or a Team Zama partner (by its partner id)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"kind": "partner", "partner_id": PARTNER_EXAMPLE, "name": "居住支援法人 すまいる",
         "takes_on": ["house_hunting", "guarantor", "check_ins", "estate_clearance"]},
        {"kind": "division", "division": "housing", "name": "住宅課", "takes_on": ["house_hunting"]}]})

    kind: RecipientKind
    division: Division | None = None
    partner_id: UUID | None = None
    name: str = Field(min_length=1, max_length=200, description="The organisation's or division's name, not a person's.")
    takes_on: list[HousingRole] = Field(min_length=1, max_length=len(HousingRole))

    @model_validator(mode="after")
    def _one_of(self) -> "RegisterMember":
        self.recipient()  # a division has a division and no partner_id; a partner the reverse
        if len(set(self.takes_on)) != len(self.takes_on):
            raise ValueError("takes_on must not repeat a role")
        return self

    def recipient(self) -> Recipient:
        return Recipient(kind=self.kind, division=self.division, partner_id=self.partner_id)


class OpenSupport(Command):
    """Open a support by hand for a case referral already knows (its つなぐシート exists)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"case_id": "0192f0c1-7a2e-7cc3-9a41-6f1c2d3e4f50"}]})

    case_id: UUID
    lead_member_id: UUID | None = Field(default=None, description="Omit to take the least-loaded house-hunting member.")


class RuleSpec(Command):
    kind: CheckInKind
    rrule: str = Field(min_length=10, max_length=1000, description=(
        "RFC 5545: a DTSTART line (Japan time when no zone is given) and an RRULE line."))
    grace_minutes: int = Field(ge=0, le=7 * 24 * 60, description="How late a check-in may be before it is missed.")

    @field_validator("rrule")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse(value)
        except InvalidSchedule as exc:
            raise ValueError(f"{exc} / {exc.message_ja}") from None
        return value

    def rule(self) -> CheckInRule:
        return CheckInRule(self.kind, self.rrule, timedelta(minutes=self.grace_minutes))


SCHEDULE_EXAMPLE = {"rules": [
    {"kind": "safety_contact", "rrule": "DTSTART;TZID=Asia/Tokyo:20261201T100000\nRRULE:FREQ=DAILY",
     "grace_minutes": 60},
    {"kind": "visit", "rrule": "DTSTART;TZID=Asia/Tokyo:20261210T140000\nRRULE:FREQ=MONTHLY", "grace_minutes": 1440}]}


class CheckInSchedule(Command):
    """The check-ins a tenancy needs, e.g. a daily safety contact and a monthly visit (居住サポート住宅)."""

    model_config = ConfigDict(json_schema_extra={"examples": [SCHEDULE_EXAMPLE]})

    rules: list[RuleSpec] = Field(max_length=10)


class NewTenancy(Command):
    """The home the person moved into. Landlord and address stay in housing support, encrypted."""

    landlord: str = Field(min_length=1, max_length=200, description="貸主（管理会社・大家）")
    address: str = Field(min_length=1, max_length=300, description="住所")
    moved_in_on: CalendarDate = Field(description="入居日")


class MoveStage(Command):
    """Move a support to its next stage; `move_in` records the tenancy, `ended` needs an end reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"to_stage": "application", "reason": "内見の結果、本人が希望"},
        {"to_stage": "move_in", "reason": "契約締結",
         "tenancy": {"landlord": "ざま不動産", "address": "座間市緑ケ丘1-1-1 101", "moved_in_on": "2027-01-15"},
         "check_in_schedule": SCHEDULE_EXAMPLE},
        {"to_stage": "ended", "reason": "施設へ入所", "end_reason": "moved_to_facility", "ended_on": "2029-03-31"}]})

    to_stage: TenancyStage
    reason: str | None = Field(default=None, max_length=1000, description="Why; kept here, encrypted, never published.")
    end_reason: TenancyEndReason | None = None
    ended_on: CalendarDate | None = Field(default=None, description="When ending a tenancy: its last day (default today).")
    tenancy: NewTenancy | None = Field(default=None, description="Required when moving in.")
    check_in_schedule: CheckInSchedule | None = Field(
        default=None, description="When moving in; without it a visit every N days (the council's default) is set.")

    @model_validator(mode="after")
    def _consistent(self) -> "MoveStage":
        if (self.to_stage is TenancyStage.ENDED) != (self.end_reason is not None):
            raise ValueError("end_reason is given exactly when to_stage is ended")
        if (self.to_stage is TenancyStage.MOVE_IN) != (self.tenancy is not None):
            raise ValueError("tenancy is given exactly when to_stage is move_in")
        if self.check_in_schedule is not None and self.to_stage is not TenancyStage.MOVE_IN:
            raise ValueError("check_in_schedule goes with move_in; later, use PUT .../check-in-schedule")
        if self.ended_on is not None and self.to_stage is not TenancyStage.ENDED:
            raise ValueError("ended_on goes with to_stage ended")
        return self


class SetLead(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [{"member_id": MEMBER_EXAMPLE}]})

    member_id: UUID


class AssignTask(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"member_id": MEMBER_EXAMPLE, "kind": "guarantor", "due_on": "2026-12-20"}]})

    member_id: UUID
    kind: HousingRole
    due_on: CalendarDate | None = None


class RecordCheckIn(Command):
    """One check-in (見守り): what it found, which member made it, and when (default now)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"kind": "safety_contact", "result": "well", "member_id": MEMBER_EXAMPLE,
         "at": "2026-12-01T10:05:00+09:00"}]})

    kind: CheckInKind
    result: CheckInResult
    member_id: UUID
    at: Moment | None = None


__all__ = ["AssignTask", "CheckInSchedule", "MoveStage", "NewTenancy", "OpenSupport", "RecordCheckIn",
           "RegisterMember", "RuleSpec", "SetLead"]
