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

Needs = Annotated[tuple[NeedCategory, ...], Field(min_length=1, max_length=16, description="Needs, without repeats.")]
ChartVersion = Annotated[str, Field(pattern=r"^\d{4}\.\d{1,3}$", description="Screening chart version, `YYYY.N`.",
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

    consultation_id: UUID = Field(description="The consultation inside intake.")
    person_ref: UUID = Field(description="Pseudonymous person id; never a name or contact detail.")
    counter: Division = Field(description="The counter where the person was heard.")
    channel: IntakeChannel
    urgency: Urgency
    needs: Needs
    primary_need: NeedCategory = Field(description="The most pressing need (◎ on the national form); one of `needs`.")
    screening_chart_version: ChartVersion | None = Field(
        default=None, description="Version of the 相談チャート whose suggestions staff confirmed, if used.")
    known_person: bool = Field(description="The person had been registered before (at any counter).")

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

    consultation_id: UUID
    need: NeedCategory
    identified_by: Division
    via_screening: bool = Field(description="Suggested by the screening chart and confirmed by staff.")


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

    consent_id: UUID
    person_ref: UUID
    recipient: Recipient
    purpose: ConsentPurpose
    method: ConsentMethod
    valid_until: date | None = Field(default=None, description="Last day the consent holds; none: until withdrawn.")


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

    consent_id: UUID
    person_ref: UUID
    recipient: Recipient
    purpose: ConsentPurpose


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
    person_ref: UUID
    basis: LegalBasis
    recipient: Recipient
    purpose: ConsentPurpose
    decided_on: date
    decision_id: UUID | None = Field(default=None, description=(
        "The recorded decision (支援会議) this grant is part of, as intake's `GET /v1/cases/{case_id}` shows it."))
    valid_until: date | None = Field(default=None, description="Last day the decision holds; none: until ended.")


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
    person_ref: UUID
    basis: LegalBasis
    recipient: Recipient
    purpose: ConsentPurpose
