"""Event models: past-tense facts with a version in their type, carrying no personal data.

Shared topics carry pseudonymous ids, codes and categories only. Every model forbids unknown
fields, so a name or a note cannot ride along by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts.codes import NeedCategory

MunicipalityCode = str


class Event(BaseModel):
    """Fields every event carries. `type` names the event and its version on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ClassVar[str]

    case_id: UUID = Field(description="Pseudonymous case id; the Kafka record key, so order holds per case.")
    municipality_code: MunicipalityCode = Field(
        pattern=r"^\d{6}$",
        description="地方公共団体コード of the city that owns the case (6 digits with check digit).",
        examples=["142166"],
    )
    occurred_at: datetime = Field(description="When the fact happened (timezone-aware).")


class ConsultationRegistered(Event):
    """A consultation was registered at a counter (相談受付)."""

    type: ClassVar[str] = "tsunagu.intake.consultation-registered.v1"

    consultation_id: UUID = Field(description="Id of the consultation inside the intake service.")
    person_ref: UUID = Field(description="Pseudonymous person id; never a name or contact detail.")
    needs: tuple[NeedCategory, ...] = Field(min_length=1, description="Needs identified, most pressing first.")
