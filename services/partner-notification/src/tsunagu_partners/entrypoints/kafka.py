"""What partner-notification consumes: every event a partner might be told of, and consents."""

from __future__ import annotations

from tsunagu_contracts import (
    INTAKE_CASES, REFERRALS, TENANCIES, CaseClosed, CaseReopened, ConsentGranted, ConsentWithdrawn,
    ConsultationRegistered, NeedIdentified, ReferralRequested, StatutoryBasisRecorded,
)
from tsunagu_partners.handlers import fan_out as f
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import EventConsumer


def subscribe(runtime: Runtime) -> None:
    EventConsumer(runtime, INTAKE_CASES, {
        ConsultationRegistered: f.on_consultation, NeedIdentified: f.on_need, ConsentGranted: f.on_consent_granted,
        ConsentWithdrawn: f.on_consent_withdrawn, StatutoryBasisRecorded: f.on_basis_recorded,
    }).subscribe()
    own = {ReferralRequested: f.on_referral_requested, CaseClosed: f.on_case_closed, CaseReopened: f.on_case_reopened}
    EventConsumer(runtime, REFERRALS, {event: own.get(event, f.fan_out) for event in REFERRALS.events}).subscribe()
    EventConsumer(runtime, TENANCIES, {event: f.fan_out for event in TENANCIES.events}).subscribe()
