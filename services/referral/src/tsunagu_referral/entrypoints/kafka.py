"""What referral consumes: intake's consultations and needs, partners' answers and undelivered
referrals, housing progress."""

from __future__ import annotations

from functools import partial

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, TENANCIES, CheckInRecorded, ConsultationRegistered, DeliveryFailed,
    HousingSupportOpened, NeedIdentified, PartnerResponded, TenancyStageChanged,
)
from tsunagu_referral.handlers import housing
from tsunagu_referral.handlers.deliveries import on_delivery_failed
from tsunagu_referral.handlers.partner_responses import on_partner_responded
from tsunagu_referral.handlers.referrals import Policy, on_consultation_registered, on_need_identified
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import EventConsumer


def subscribe(runtime: Runtime, policy: Policy) -> None:
    EventConsumer(runtime, INTAKE_CASES, {
        ConsultationRegistered: partial(on_consultation_registered, policy=policy),
        NeedIdentified: partial(on_need_identified, policy=policy),
    }).subscribe()
    EventConsumer(runtime, PARTNER_RESPONSES, {
        PartnerResponded: partial(on_partner_responded, policy=policy),
        DeliveryFailed: partial(on_delivery_failed, policy=policy),
    }).subscribe()
    EventConsumer(runtime, TENANCIES, {
        HousingSupportOpened: partial(housing.on_support_opened, policy=policy),
        TenancyStageChanged: partial(housing.on_stage_changed, policy=policy),
        CheckInRecorded: partial(housing.on_check_in_recorded, policy=policy),
    }).subscribe()
