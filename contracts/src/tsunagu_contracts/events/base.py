"""What every event is: a past-tense fact about one case, carrying no personal data.

Shared topics carry pseudonymous ids, codes, dates and counts only. Every model forbids unknown
fields and has no free-text field, so a name, a phone number or a note cannot ride along: the
contracts' tests walk every schema to keep it that way.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tsunagu_contracts.codes import Division, RecipientKind

MunicipalityCode = Annotated[str, Field(
    pattern=r"^\d{6}$",
    description=("The municipality code (全国地方公共団体コード, JIS X 0401: 6 digits, the last a check digit) "
                 "of the city that owns the case, e.g. 142166 for Zama."),
    examples=["142166"],
)]


def _check_digit_ok(code: str) -> str:
    expected = _check_digit(code[:5])
    if int(code[5]) != expected:
        raise ValueError(f"check digit of municipality code {code} should be {expected}")
    return code


@lru_cache(maxsize=2048)
def _check_digit(first_five: str) -> int:
    """JIS X 0401 / 総務省: the 6th digit is 11 - (sum of digits 1-5 weighted 6,5,4,3,2) mod 11. Remembered
    per code (Japan has under 2,000 municipalities): every event decoded checks one."""
    weighted = sum(int(d) * w for d, w in zip(first_five, (6, 5, 4, 3, 2), strict=True))
    return (11 - weighted % 11) % 10


CheckedMunicipalityCode = Annotated[MunicipalityCode, AfterValidator(_check_digit_ok)]


class Contract(BaseModel):
    """A model on a shared topic: immutable and closed to fields it does not declare."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Contract):
    """Fields every event carries. `type` names the event and its version on the wire (`ce_type`)."""

    type: ClassVar[str]
    producer: ClassVar[str]

    case_id: UUID = Field(description=(
        "The case (相談) as a pseudonymous id. The record key and `ce_subject`, so events of one case "
        "arrive in order."))
    municipality_code: CheckedMunicipalityCode
    occurred_at: AwareDatetime = Field(description=(
        "When the fact happened, RFC 3339 with its UTC offset; also `ce_time`. The Japan date of it "
        "(Asia/Tokyo, `tsunagu_contracts.japan.japan_date`) is the day for deadlines and validity."))

    @classmethod
    def event_name(cls) -> str:
        return cls.__name__

    def addressees(self) -> tuple["Recipient", ...]:
        """Who the event is news to. Empty: anyone allowed to see the case; otherwise only these."""
        return ()


class Recipient(Contract):
    """Who a referral or a consent is for: a city division, or a partner organisation by its id."""

    kind: RecipientKind = Field(description=(
        "A city division (庁内の窓口) or a Team Zama partner organisation (code list RecipientKind); "
        "says which of `division` and `partner_id` is set."))
    division: Division | None = Field(default=None, description=(
        "The division (code list Division); set when `kind` is `division`, absent otherwise."))
    partner_id: UUID | None = Field(default=None, description=(
        "The partner organisation's id in partner-notification's registry; set when `kind` is `partner`, "
        "absent otherwise."))

    @model_validator(mode="after")
    def _one_of(self) -> "Recipient":
        if self.kind is RecipientKind.DIVISION and (self.division is None or self.partner_id is not None):
            raise ValueError("a division recipient has a division and no partner_id")
        if self.kind is RecipientKind.PARTNER and (self.partner_id is None or self.division is not None):
            raise ValueError("a partner recipient has a partner_id and no division")
        return self

    @classmethod
    def of_division(cls, division: Division) -> "Recipient":
        return cls(kind=RecipientKind.DIVISION, division=division)

    @classmethod
    def of_partner(cls, partner_id: UUID) -> "Recipient":
        return cls(kind=RecipientKind.PARTNER, partner_id=partner_id)


def example_base(case: str = "0192f0c1-7a2e-7cc3-9a41-6f1c2d3e4f50") -> dict:
    """Fields shared by the documented examples."""
    return {"case_id": case, "municipality_code": "142166", "occurred_at": "2026-11-27T10:15:00+09:00"}


__all__ = ["CheckedMunicipalityCode", "Contract", "Event", "Recipient", "example_base"]
