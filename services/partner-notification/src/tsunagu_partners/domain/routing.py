"""Which events reach which partner: what it subscribed to, and only what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu_contracts import Event, ReferralSheetOpened


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
