"""Which events reach which partner: what it subscribed to, and only what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu_contracts import (
    CheckInEscalated, CheckInMissed, CheckInRecorded, EstateClearanceRequested, Event, HousingSupportOpened,
    ReferralSheetOpened, TenancyEnded, TenancyStageChanged, TenancyStarted,
)
from tsunagu_contracts.codes import ConsentPurpose

_HOUSING = frozenset({ConsentPurpose.HOUSING_SUPPORT})
_CHECK_INS = frozenset({ConsentPurpose.CHECK_IN, ConsentPurpose.HOUSING_SUPPORT})
PURPOSES: dict[type[Event], frozenset[ConsentPurpose]] = {
    HousingSupportOpened: _HOUSING, TenancyStageChanged: _HOUSING, TenancyStarted: _HOUSING, TenancyEnded: _HOUSING,
    CheckInRecorded: _CHECK_INS, CheckInMissed: _CHECK_INS, CheckInEscalated: _CHECK_INS,
    EstateClearanceRequested: frozenset({ConsentPurpose.ESTATE_CLEARANCE}),
}
"""Events a consent reaches only when given for one of these purposes; a statutory basis reaches all.
Clearing a dead person's home is not what a consent to find them one was given for."""


@dataclass(frozen=True)
class Wants:
    event_types: frozenset[str]
    need_categories: frozenset[str]
    areas: frozenset[str]

    def matches(self, event: Event, case_needs: frozenset[str]) -> bool:
        if self.event_types and event.type not in self.event_types:
            return False
        if self.areas and event.municipality_code not in self.areas:
            return False
        needs = needs_of(event) or case_needs
        return not self.need_categories or not needs or bool(self.need_categories & needs)


def needs_of(event: Event) -> frozenset[str]:
    """The need categories an event is about, when it says."""
    if hasattr(event, "need"):
        return frozenset({event.need.value})
    if hasattr(event, "needs") and not isinstance(event, ReferralSheetOpened):
        return frozenset(n.value for n in event.needs)
    return frozenset()


def permits(event: Event, consented: frozenset[str], *, statutory: bool) -> bool:
    """Whether a partner's consents (by purpose) or a statutory basis let it hear of this event."""
    needed = PURPOSES.get(type(event))
    return statutory or needed is None or bool(needed & consented)


def purpose_pairs() -> tuple[list[str], list[str]]:
    """PURPOSES as two parallel lists (event type, purpose), for a query to unnest."""
    pairs = [(event.type, purpose.value) for event, purposes in PURPOSES.items() for purpose in sorted(purposes)]
    return [t for t, _ in pairs], [p for _, p in pairs]
