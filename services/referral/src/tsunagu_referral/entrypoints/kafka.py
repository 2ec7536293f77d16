"""What referral consumes: intake's consultations, needs, consents and statutory bases, partners'
answers and undelivered referrals, housing progress; and, apart, the events its report read model
is built from."""

from __future__ import annotations

from functools import partial

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, TENANCIES, CheckInRecorded, ConsentGranted, ConsentWithdrawn,
    ConsultationRegistered, DeliveryFailed, HousingSupportOpened, NeedIdentified, PartnerResponded,
    StatutoryBasisEnded, StatutoryBasisRecorded, TenancyStageChanged,
)
from tsunagu_outbox import in_unit_of_work
from tsunagu_referral.adapters.reports import CONSUMER
from tsunagu_referral.adapters.repository import Repository
from tsunagu_referral.domain.model import Policy
from tsunagu_referral.handlers import consent, housing
from tsunagu_referral.handlers.deliveries import on_delivery_failed
from tsunagu_referral.handlers.partner_responses import on_partner_responded
from tsunagu_referral.handlers.referrals import on_consultation_registered, on_need_identified
from tsunagu_referral.handlers.reports import PROJECTIONS, projecting
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import BATCH, BatchEventConsumer


OWN_TOPICS = (INTAKE_CASES, PARTNER_RESPONSES, TENANCIES)
"""What `subscribe` reads; its consumers dead-letter what cannot be decoded there."""


def subscribe(runtime: Runtime, policy: Policy) -> None:
    def handle(handler):
        return in_unit_of_work(Repository, partial(handler, policy=policy))

    async def lock_sheets_first(conn, envelopes) -> None:
        await Repository(conn).lock_sheets([envelope.data.case_id for envelope in envelopes])

    # Batches: one transaction for what the broker has ready (many records under load, one when
    # quiet), each record applied in order and exactly once as it would be alone; a batch takes its
    # cases' sheet locks first, in one order (adapters/repository.py).
    def batches(topic, handlers) -> None:
        BatchEventConsumer(runtime, topic, handlers, max_records=BATCH, lock_first=lock_sheets_first).subscribe()

    batches(INTAKE_CASES, {
        ConsultationRegistered: handle(on_consultation_registered),
        NeedIdentified: handle(on_need_identified),
        ConsentGranted: handle(consent.on_consent_granted),
        ConsentWithdrawn: handle(consent.on_consent_withdrawn),
        StatutoryBasisRecorded: handle(consent.on_basis_recorded),
        StatutoryBasisEnded: handle(consent.on_basis_ended),
    })
    batches(PARTNER_RESPONSES, {
        PartnerResponded: handle(on_partner_responded),
        DeliveryFailed: handle(on_delivery_failed),
    })
    batches(TENANCIES, {
        HousingSupportOpened: handle(housing.on_support_opened),
        TenancyStageChanged: handle(housing.on_stage_changed),
        CheckInRecorded: handle(housing.on_check_in_recorded),
    })


# The report read model ---------------------------------------------------------------------------

def subscribe_reports(runtime: Runtime) -> None:
    """The report read model's consumers, in a group of their own (`tsunagu-referral-reports`) with
    their own applied-event records: `rebuild-reports` can replay the log into it without touching
    what moved the referrals. They apply what the broker gives in batches, one transaction each: a
    projection's statements are cheap next to a transaction, and its rows are keyed by case, which
    one partition carries, so two batches never take each other's rows in another order."""
    for topic, projections in PROJECTIONS.items():
        BatchEventConsumer(runtime, topic, {event: projecting(projection) for event, projection in projections.items()},
                      consumer=CONSUMER, leaves_undecodable=topic in OWN_TOPICS).subscribe()
