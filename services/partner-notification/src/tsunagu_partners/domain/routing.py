"""Which events reach which partner: what it subscribed to, and only what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu_contracts import (
    CheckInEscalated, CheckInMissed, CheckInRecorded, EstateClearanceRequested, Event, HousingSupportOpened,
    ReferralSheetOpened, TenancyEnded, TenancyStageChanged, TenancyStarted,
)
from tsunagu_contracts.codes import ConsentPurpose, NeedCategory, referral_purposes
from tsunagu_contracts.events.referral import ReferralEvent

_HOUSING = frozenset({ConsentPurpose.HOUSING_SUPPORT})
_EMPLOYMENT = frozenset({ConsentPurpose.EMPLOYMENT_SUPPORT})
_CHECK_INS = frozenset({ConsentPurpose.CHECK_IN, ConsentPurpose.HOUSING_SUPPORT})
PURPOSES: dict[type[Event], frozenset[ConsentPurpose]] = {
    HousingSupportOpened: _HOUSING, TenancyStageChanged: _HOUSING, TenancyStarted: _HOUSING, TenancyEnded: _HOUSING,
    CheckInRecorded: _CHECK_INS, CheckInMissed: _CHECK_INS, CheckInEscalated: _CHECK_INS,
    EstateClearanceRequested: frozenset({ConsentPurpose.ESTATE_CLEARANCE}),
}
"""Events a consent reaches only when given for one of these purposes; a statutory basis reaches all.
Clearing a dead person's home is not what a consent to find them one was given for. A referral's
events need what its need's referral rests on (tsunagu_contracts.codes.referral_purposes)."""


def purposes_for(event: Event, need: NeedCategory | str | None = None) -> frozenset[ConsentPurpose] | None:
    """The purposes one of which a consent must have been given for to reach the event; None when any
    consent does. `need` is the referral's, for an event about a referral."""
    if isinstance(event, ReferralEvent):
        return referral_purposes(need)
    return PURPOSES.get(type(event))


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


def permits(event: Event, consented: frozenset[str], *, statutory: bool,
            need: NeedCategory | str | None = None) -> bool:
    """Whether a partner's consents (by purpose) or a statutory basis let it hear of this event."""
    needed = purposes_for(event, need)
    return statutory or needed is None or bool(needed & consented)
