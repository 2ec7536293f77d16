"""Events of the housing-support service (居住支援): tenancies from house-hunting to their end."""

from __future__ import annotations

from datetime import date
from typing import ClassVar
from uuid import UUID

from pydantic import ConfigDict, Field

from tsunagu_contracts.codes import (
    CheckInEscalationReason, CheckInKind, CheckInResult, TenancyEndReason, TenancyStage,
)
from tsunagu_contracts.events.base import Event, Recipient, example_base

SUPPORT = "0192f0c1-7a2e-7cc3-9a41-000000100001"
TENANCY = "0192f0c1-7a2e-7cc3-9a41-000000200001"
MEMBER = "0192f0c1-7a2e-7cc3-9a41-00000000b002"
LEAD = {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"}


class HousingEvent(Event):
    """An event about one housing support case."""

    producer: ClassVar[str] = "housing-support"

    support_id: UUID = Field(description=(
        "The housing support case (居住支援) inside housing-support; every event about it names the same id."))


class ForResponsibleMember(HousingEvent):
    """A housing event addressed to the support's responsible council member."""

    responsible_member_id: UUID = Field(description="The council member (居住支援法人 or division) in charge.")
    responsible: Recipient | None = Field(default=None, description=(
        "Who the responsible member is (a division or a partner): the event is addressed to them."))

    def addressees(self) -> tuple[Recipient, ...]:
        return (self.responsible,) if self.responsible else ()


class HousingSupportOpened(ForResponsibleMember):
    """Housing support began for a case; a council member is responsible for it."""

    type: ClassVar[str] = "tsunagu.housing.support-opened.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa",
        "referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0001", "stage": "house_hunting",
        "responsible_member_id": MEMBER, "responsible": LEAD}]})

    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    referral_id: UUID | None = Field(default=None, description=(
        "The housing referral (紹介) that opened it; absent when the council opened it by hand."))
    stage: TenancyStage = Field(description="The stage it opened at (code list TenancyStage); usually house_hunting.")


class TenancyStageChanged(HousingEvent):
    """The support moved on to another stage."""

    type: ClassVar[str] = "tsunagu.housing.stage-changed.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "from_stage": "house_hunting", "to_stage": "application"}]})

    from_stage: TenancyStage = Field(description="The stage the support left (code list TenancyStage).")
    to_stage: TenancyStage = Field(description="The stage the support moved to (code list TenancyStage).")
    end_reason: TenancyEndReason | None = Field(default=None, description=(
        "Why the support ended (code list TenancyEndReason); set when `to_stage` is `ended`, absent otherwise."))


class TenancyStarted(HousingEvent):
    """The person moved in; check-ins are scheduled from here."""

    type: ClassVar[str] = "tsunagu.housing.tenancy-started.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY, "moved_in_on": "2027-01-15",
        "check_in_every_days": 14}]})

    tenancy_id: UUID = Field(description="The tenancy: one move-in to one home, from TenancyStarted to TenancyEnded.")
    moved_in_on: date = Field(description="The day (a Japan date, Asia/Tokyo) the person moved in.")
    check_in_every_days: int = Field(ge=1, le=366, description=(
        "Days between scheduled check-ins (見守り), counted from `moved_in_on`: the shortest interval when "
        "the support has several schedules."))


class CheckInRecorded(HousingEvent):
    """A check-in (見守り) took place."""

    type: ClassVar[str] = "tsunagu.housing.check-in-recorded.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY,
        "check_in_id": "0192f0c1-7a2e-7cc3-9a41-000000300001", "scheduled_for": "2027-01-29", "result": "well",
        "kind": "visit"}]})

    tenancy_id: UUID = Field(description="The tenancy: one move-in to one home, from TenancyStarted to TenancyEnded.")
    check_in_id: UUID = Field(description="The check-in (見守り): one scheduled occurrence of the tenancy's schedule.")
    scheduled_for: date = Field(description="The day (a Japan date, Asia/Tokyo) the check-in was scheduled for.")
    result: CheckInResult = Field(description="What the check-in found (code list CheckInResult).")
    kind: CheckInKind | None = Field(default=None, description=(
        "A visit or a safety contact (code list CheckInKind); absent when it was not recorded."))


class CheckInMissed(ForResponsibleMember):
    """A scheduled check-in did not happen; the responsible council member must act."""

    type: ClassVar[str] = "tsunagu.housing.check-in-missed.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY,
        "check_in_id": "0192f0c1-7a2e-7cc3-9a41-000000300002", "scheduled_for": "2027-02-12",
        "responsible_member_id": MEMBER, "responsible": LEAD, "kind": "safety_contact", "missed_occurrences": 1}]})

    tenancy_id: UUID = Field(description="The tenancy: one move-in to one home, from TenancyStarted to TenancyEnded.")
    check_in_id: UUID = Field(description="The check-in (見守り): one scheduled occurrence of the tenancy's schedule.")
    scheduled_for: date = Field(description=(
        "The day (a Japan date, Asia/Tokyo) of the latest occurrence that was missed."))
    kind: CheckInKind | None = Field(default=None, description=(
        "The kind of check-in the schedule asked for (code list CheckInKind); absent when it was not recorded."))
    missed_occurrences: int = Field(default=1, ge=1, description=(
        "Occurrences of the schedule missed since the last report: more than one after the service was stopped."))


class CheckInEscalated(ForResponsibleMember):
    """A check-in found the person absent twice in a row, or in an emergency: the responsible member must act now."""

    type: ClassVar[str] = "tsunagu.housing.check-in-escalated.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY,
        "check_in_id": "0192f0c1-7a2e-7cc3-9a41-000000300003", "reason": "not_at_home_twice",
        "responsible_member_id": MEMBER, "responsible": LEAD}]})

    tenancy_id: UUID = Field(description="The tenancy: one move-in to one home, from TenancyStarted to TenancyEnded.")
    check_in_id: UUID = Field(description="The check-in (見守り) that caused the escalation.")
    reason: CheckInEscalationReason = Field(description="Why it was escalated at once (code list CheckInEscalationReason).")


class TenancyEnded(HousingEvent):
    """The tenancy ended."""

    type: ClassVar[str] = "tsunagu.housing.tenancy-ended.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY, "ended_on": "2029-03-31",
        "reason": "moved_to_facility"}]})

    tenancy_id: UUID = Field(description="The tenancy: one move-in to one home, from TenancyStarted to TenancyEnded.")
    ended_on: date = Field(description="The tenancy's last day (a Japan date, Asia/Tokyo).")
    reason: TenancyEndReason = Field(description="Why the tenancy ended (code list TenancyEndReason).")


class EstateClearanceRequested(HousingEvent):
    """Clearing the home (残置物処理・遺品整理) was asked of a partner after the tenancy ended."""

    type: ClassVar[str] = "tsunagu.housing.estate-clearance-requested.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "support_id": SUPPORT, "tenancy_id": TENANCY,
        "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b003"}]})

    tenancy_id: UUID = Field(description="The ended tenancy whose home is to be cleared.")
    partner_id: UUID = Field(description="The partner asked to clear the home; the event is addressed to it.")

    def addressees(self) -> tuple[Recipient, ...]:
        return (Recipient.of_partner(self.partner_id),)
