"""Events of the intake service (相談受付): consultations, needs, consent and statutory bases."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from tsunagu_contracts.codes import (
    ConsentMethod, ConsentPurpose, Division, IntakeChannel, LegalBasis, NeedCategory, Urgency,
)
from tsunagu_contracts.events.base import Event, Recipient, example_base

Needs = Annotated[tuple[NeedCategory, ...], Field(min_length=1, max_length=16, description=(
    "The needs (課題) heard, without repeats: 1 to 16 codes of the national intake form (code list NeedCategory)."))]
ChartVersion = Annotated[str, Field(pattern=r"^\d{4}\.\d{1,3}$", description="Screening chart (相談チャート) version, `YYYY.N`.",
                                    examples=["2026.1"])]


def _unique(needs: tuple[NeedCategory, ...]) -> None:
    if len(set(needs)) != len(needs):
        raise ValueError("needs must not repeat a category")


class ConsultationRegistered(Event):
    """A consultation was registered at a counter (相談受付). The person is known by a pseudonym only."""

    type: ClassVar[str] = "tsunagu.intake.consultation-registered.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(),
        "consultation_id": "0192f0c1-7a2e-7cc3-9a41-000000000001",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa",
        "counter": "tax", "channel": "counter", "urgency": "high",
        "needs": ["rent_loan", "housing", "debt", "health"], "primary_need": "rent_loan",
        "screening_chart_version": "2026.1", "known_person": False,
    }]})

    consultation_id: UUID = Field(description="The consultation (相談) inside intake; a case may hold several.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    counter: Division = Field(description="The counter (窓口) where the person was heard (code list Division).")
    channel: IntakeChannel = Field(description="How the person reached the city (code list IntakeChannel).")
    urgency: Urgency = Field(description="How soon the person needs help, as staff judged it (code list Urgency).")
    needs: Needs
    primary_need: NeedCategory = Field(description="The most pressing need (◎ on the national form); one of `needs`.")
    screening_chart_version: ChartVersion | None = Field(
        default=None, description="Version of the screening chart (相談チャート) whose suggestions staff confirmed; absent when "
                     "no chart was used.")
    known_person: bool = Field(description=(
        "True when the person had been registered before, at any counter; false for a first consultation."))

    @model_validator(mode="after")
    def _primary_is_a_need(self) -> "ConsultationRegistered":
        _unique(self.needs)
        if self.primary_need not in self.needs:
            raise ValueError("primary_need must be one of needs")
        return self


class NeedIdentified(Event):
    """A further need was identified on an open case."""

    type: ClassVar[str] = "tsunagu.intake.need-identified.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "consultation_id": "0192f0c1-7a2e-7cc3-9a41-000000000001",
        "need": "no_food", "identified_by": "living_support", "via_screening": True,
    }]})

    consultation_id: UUID = Field(description="The consultation (相談) during which the need was heard.")
    need: NeedCategory = Field(description="The further need (課題), code list NeedCategory; not yet on the case.")
    identified_by: Division = Field(description="The division (窓口) whose staff identified it (code list Division).")
    via_screening: bool = Field(description=(
        "True when the screening chart (相談チャート) suggested it and staff confirmed; false when staff noticed it."))


class ConsentGranted(Event):
    """The person agreed that a recipient may receive their information for a purpose (本人同意)."""

    type: ClassVar[str] = "tsunagu.intake.consent-granted.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "consent_id": "0192f0c1-7a2e-7cc3-9a41-0000000c0001",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa",
        "recipient": {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"},
        "purpose": "housing_support", "method": "written", "valid_until": "2027-11-26",
    }]})

    consent_id: UUID = Field(description="The consent (本人同意); ConsentWithdrawn names the same id.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    recipient: Recipient = Field(description="Who may receive the person's information: a division or a partner.")
    purpose: ConsentPurpose = Field(description="What the information may be used for (code list ConsentPurpose).")
    method: ConsentMethod = Field(description="How the person gave the consent (code list ConsentMethod).")
    valid_until: date | None = Field(default=None, description=(
        "Last day (a Japan date, Asia/Tokyo) the consent holds, inclusive; absent: until withdrawn."))


class ConsentWithdrawn(Event):
    """The person withdrew a consent; from now on the recipient gets nothing more for that purpose."""

    type: ClassVar[str] = "tsunagu.intake.consent-withdrawn.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "consent_id": "0192f0c1-7a2e-7cc3-9a41-0000000c0001",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa",
        "recipient": {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"},
        "purpose": "housing_support",
    }]})

    consent_id: UUID = Field(description="The consent (本人同意) withdrawn, as ConsentGranted named it.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    recipient: Recipient = Field(description="The recipient who gets nothing more for `purpose` from now on.")
    purpose: ConsentPurpose = Field(description="The purpose the consent was for (code list ConsentPurpose).")


class StatutoryBasisRecorded(Event):
    """Sharing without consent was decided under a statutory basis (e.g. a 支援会議) and recorded.

    One event per member and purpose the decision covers: `basis_id` names that one grant, which
    StatutoryBasisEnded ends; `decision_id` names the decision it belongs to."""

    type: ClassVar[str] = "tsunagu.intake.statutory-basis-recorded.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "basis_id": "0192f0c1-7a2e-7cc3-9a41-0000000d0001",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa", "basis": "support_conference_sra_9",
        "recipient": {"kind": "division", "division": "housing"}, "purpose": "referral",
        "decided_on": "2026-11-26",
    }, {
        **example_base(), "basis_id": "0192f0c1-7a2e-7cc3-9a41-0000000d0002",
        "decision_id": "0192f0c1-7a2e-7cc3-9a41-0000000d1000",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa", "basis": "support_conference_swa_106_6",
        "recipient": {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"},
        "purpose": "housing_support", "decided_on": "2026-11-26", "valid_until": "2027-05-31",
    }]})

    basis_id: UUID = Field(description="This grant: one member, one purpose of the decision.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    basis: LegalBasis = Field(description="The statute that allows sharing without consent (code list LegalBasis).")
    recipient: Recipient = Field(description="The member (a division or a partner) who may receive the information.")
    purpose: ConsentPurpose = Field(description="What the information may be used for (code list ConsentPurpose).")
    decided_on: date = Field(description="The day (a Japan date, Asia/Tokyo) the decision was taken.")
    decision_id: UUID | None = Field(default=None, description=(
        "The recorded decision (支援会議) this grant is part of, as intake's `GET /v1/cases/{case_id}` shows it."))
    valid_until: date | None = Field(default=None, description=(
        "Last day (a Japan date, Asia/Tokyo) the decision holds, inclusive; absent: until ended."))


class StatutoryBasisEnded(Event):
    """A statutory basis was ended before its last day: like a withdrawn consent, the member gets
    nothing more for that purpose under it. One event per grant the decision recorded."""

    type: ClassVar[str] = "tsunagu.intake.statutory-basis-ended.v1"
    producer: ClassVar[str] = "intake"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "basis_id": "0192f0c1-7a2e-7cc3-9a41-0000000d0002",
        "decision_id": "0192f0c1-7a2e-7cc3-9a41-0000000d1000",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa", "basis": "support_conference_swa_106_6",
        "recipient": {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"},
        "purpose": "housing_support",
    }]})

    basis_id: UUID = Field(description="The grant that ends, as StatutoryBasisRecorded named it.")
    decision_id: UUID = Field(description="The recorded decision (支援会議) that was ended.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    basis: LegalBasis = Field(description="The statute the grant rested on (code list LegalBasis).")
    recipient: Recipient = Field(description="The member who gets nothing more for `purpose` under this grant.")
    purpose: ConsentPurpose = Field(description="The purpose the grant was for (code list ConsentPurpose).")
