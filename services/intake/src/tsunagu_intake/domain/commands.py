"""Commands the intake service accepts, validated before anything is stored.

Personal details and notes are accepted here and stay inside intake, encrypted at rest; only a
pseudonymous person id leaves on events.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tsunagu_contracts.codes import (
    ConsentMethod, ConsentPurpose, Division, IntakeChannel, LegalBasis, NeedCategory, RecipientKind, Urgency,
)
from tsunagu_contracts.events import Recipient
from tsunagu_contracts.dates import CalendarDate

Cue = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$",
                           description="A screening chart cue code.")]

Kana = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\u3041-\u3096\u30a1-\u30fa\u30fc\u3000 ・ー]+$",
                            description="Name in kana (ひらがな or カタカナ).")]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewPerson(Command):
    """Who the person is. Stored encrypted; never published."""

    name: str = Field(min_length=1, max_length=100, description="氏名")
    name_kana: Kana = Field(description="氏名（かな）")
    birth_date: CalendarDate = Field(description="生年月日")
    phone: str | None = Field(default=None, max_length=30, pattern=r"^[0-9+\-() ]+$", description="電話番号")
    address: str | None = Field(default=None, max_length=200, description="住所")


class ConsentRequest(Command):
    """Consent the person gave at the counter: one recipient, one purpose."""

    recipient: Recipient
    purpose: ConsentPurpose
    method: ConsentMethod
    valid_until: CalendarDate | None = None


class Screening(Command):
    """What the screening chart suggested from the cues staff noticed, and what staff confirmed."""

    chart_version: str = Field(max_length=8, pattern=r"^\d{4}\.\d{1,3}$")
    cues: list[Cue] = Field(min_length=1, max_length=40)
    confirmed: list[NeedCategory] = Field(default_factory=list, max_length=len(NeedCategory),
                                          description="Suggested needs staff confirmed.")


EXAMPLE = {
    "person": {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02", "phone": "046-000-0000"},
    "counter": "tax",
    "channel": "counter",
    "urgency": "high",
    "needs": ["rent_loan", "housing", "debt", "health"],
    "primary_need": "rent_loan",
    "consents": [{"recipient": {"kind": "division", "division": "housing"}, "purpose": "housing_support",
                  "method": "written"}],
    "screening": {"chart_version": "2026.1", "cues": ["rent_arrears", "debt_collection"],
                  "confirmed": ["rent_loan", "housing", "debt"]},
    "notes": "納税相談の際、家賃も3か月滞納していると話された。",
}


class RegisterConsultation(Command):
    """Register a consultation at any counter (相談受付). Either `person` (new) or `person_ref` (known)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    person: NewPerson | None = None
    person_ref: UUID | None = Field(default=None, description="A person already registered at any counter.")
    counter: Division
    channel: IntakeChannel
    urgency: Urgency
    needs: list[NeedCategory] = Field(min_length=1, max_length=16)
    primary_need: NeedCategory = Field(description="◎ the most pressing need; one of `needs`.")
    consents: list[ConsentRequest] = Field(default_factory=list, max_length=32)
    screening: Screening | None = None
    notes: str | None = Field(default=None, max_length=4000, description="Free text; stays inside intake.")

    @model_validator(mode="after")
    def _consistent(self) -> "RegisterConsultation":
        if (self.person is None) == (self.person_ref is None):
            raise ValueError("give either person (a new person) or person_ref (a known person), not both")
        if len(set(self.needs)) != len(self.needs):
            raise ValueError("needs must not repeat a category")
        if self.primary_need not in self.needs:
            raise ValueError("primary_need must be one of needs")
        if self.screening and not set(self.screening.confirmed) <= set(self.needs):
            raise ValueError("every confirmed suggestion must be among needs")
        return self


class GrantConsent(ConsentRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "recipient": {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"},
        "purpose": "housing_support", "method": "written", "valid_until": "2027-11-26"}]})


class ScreenCues(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [{"cues": ["rent_arrears", "job_loss"]}]})

    cues: list[Cue] = Field(min_length=1, max_length=40)
    chart_version: str | None = Field(default=None, max_length=8, pattern=r"^\d{4}\.\d{1,3}$",
                                      description="Defaults to the current chart.")


class RecordStatutoryBasis(Command):
    """A support conference's decision (支援会議) to share without the person's consent: on which legal
    basis, when it was held, which members (divisions and partners) it covers, what may be shared
    (by purpose, each with the items its purpose needs), and until when."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "basis": "support_conference_sra_9", "held_on": "2026-11-26", "valid_until": "2027-05-31",
        "members": [{"kind": "division", "division": "housing"},
                    {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"}],
        "purposes": ["referral", "housing_support"]}]})

    basis: LegalBasis = Field(description="法的根拠 (e.g. 生活困窮者自立支援法第9条の支援会議)")
    held_on: CalendarDate = Field(description="支援会議の開催日 (the day the decision was taken)")
    valid_until: CalendarDate = Field(description="共有の期限 (last day the decision holds)")
    members: list[Recipient] = Field(min_length=1, max_length=50, description="対象の構成員 (divisions and partners)")
    purposes: list[ConsentPurpose] = Field(min_length=1, max_length=len(ConsentPurpose),
                                           description="共有してよい情報の目的 (each purpose gives its items only)")

    @model_validator(mode="after")
    def _consistent(self) -> "RecordStatutoryBasis":
        if self.valid_until < self.held_on:
            raise ValueError("valid_until must not be before held_on (期限は開催日以降にしてください)")
        if len(set(self.members)) != len(self.members):
            raise ValueError("members must not repeat (構成員が重複しています)")
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError("purposes must not repeat (目的が重複しています)")
        return self


class PersonKey(Command):
    """What the duplicate check compares: kana name and birth date, nothing else of the person."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name_kana": "ざま はなこ",
                                                               "birth_date": "1968-04-02"}]})
    name_kana: Kana = Field(description="氏名（かな）")
    birth_date: CalendarDate = Field(description="生年月日")


def duplicate_key_text(person: NewPerson | PersonKey) -> str:
    """Kana name and birth date, normalised so the same person typed twice compares equal."""
    kana = unicodedata.normalize("NFKC", person.name_kana)
    katakana = "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in kana)
    compact = "".join(c for c in katakana if c not in " \u3000・")
    return f"{compact}|{person.birth_date.isoformat()}"


__all__ = ["ConsentRequest", "GrantConsent", "NewPerson", "PersonKey", "RecipientKind", "RecordStatutoryBasis",
           "RegisterConsultation", "ScreenCues", "Screening", "duplicate_key_text"]
