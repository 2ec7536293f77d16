"""Council members and how the lead of a new support is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import HousingRole


@dataclass(frozen=True)
class Member:
    member_id: UUID
    name: str
    recipient: Recipient
    takes_on: frozenset[HousingRole]
    registered_at: datetime

    @property
    def partner_id(self) -> UUID | None:
        return self.recipient.partner_id


def choose_lead(candidates: list[Member], open_supports: dict[UUID, int]) -> Member | None:
    """Least-loaded: the candidate leading the fewest open supports; on a tie, the longest registered.

    Least-loaded rather than round-robin, because supports last months and differ in length: a
    member whose cases ended takes the next one, whatever the order of arrival.
    """
    if not candidates:
        return None
    return min(candidates, key=lambda m: (open_supports.get(m.member_id, 0), m.registered_at, str(m.member_id)))
