"""The event catalogue, v1: every event type any service publishes."""

from __future__ import annotations

from tsunagu_contracts.events.base import Contract, Event, Recipient
from tsunagu_contracts.events.housing import (
    CheckInEscalated, CheckInMissed, CheckInRecorded, EstateClearanceRequested, HousingSupportOpened, TenancyEnded,
    TenancyStageChanged, TenancyStarted,
)
from tsunagu_contracts.events.intake import (
    ConsentGranted, ConsentWithdrawn, ConsultationRegistered, NeedIdentified, StatutoryBasisEnded, StatutoryBasisRecorded,
)
from tsunagu_contracts.events.partners import DeliveryFailed, PartnerResponded
from tsunagu_contracts.events.referral import (
    CaseClosed, CaseContactOverdue, CaseReopened, FollowUpAnswered, FollowUpDue, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted, ReferralSheetOpened,
)

CATALOGUE: tuple[type[Event], ...] = (
    ConsultationRegistered, NeedIdentified, ConsentGranted, ConsentWithdrawn, StatutoryBasisRecorded,
    StatutoryBasisEnded, ReferralSheetOpened, ReferralRequested, ReferralAccepted, ReferralDeclined, ReferralContactMade,
    ReferralCompleted, ReferralOverdue, ReferralRerouted, CaseContactOverdue, CaseClosed, CaseReopened,
    FollowUpDue, FollowUpAnswered,
    HousingSupportOpened, TenancyStageChanged, TenancyStarted, CheckInRecorded, CheckInMissed, CheckInEscalated,
    TenancyEnded, EstateClearanceRequested,
    PartnerResponded, DeliveryFailed,
)
EVENT_TYPES: dict[str, type[Event]] = {event.type: event for event in CATALOGUE}

__all__ = [
    "CATALOGUE", "EVENT_TYPES", "CaseClosed", "CaseContactOverdue", "CaseReopened", "CheckInEscalated", "CheckInMissed", "CheckInRecorded",
    "ConsentGranted", "ConsentWithdrawn", "ConsultationRegistered", "Contract", "DeliveryFailed",
    "EstateClearanceRequested", "Event", "FollowUpAnswered", "FollowUpDue", "HousingSupportOpened", "NeedIdentified", "PartnerResponded",
    "Recipient", "ReferralAccepted", "ReferralCompleted", "ReferralContactMade", "ReferralDeclined",
    "ReferralOverdue", "ReferralRequested", "ReferralRerouted", "ReferralSheetOpened", "StatutoryBasisEnded", "StatutoryBasisRecorded",
    "TenancyEnded", "TenancyStageChanged", "TenancyStarted",
]
