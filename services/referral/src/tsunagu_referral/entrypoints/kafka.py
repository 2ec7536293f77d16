"""What referral consumes: intake's consultations, needs, consents and statutory bases, partners'
answers and undelivered referrals, housing progress. Its consumers also project what its report
read model is built from (handlers/reports.py)."""

from __future__ import annotations

from functools import partial

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, TENANCIES, CheckInRecorded, ConsentGranted, ConsentWithdrawn,
    ConsultationRegistered, DeliveryFailed, Event, HousingSupportOpened, NeedIdentified, PartnerResponded,
    StatutoryBasisEnded, StatutoryBasisRecorded, TenancyStageChanged, Topic,
)
from tsunagu_outbox import in_unit_of_work
from tsunagu_referral.adapters.repository import Repository
from tsunagu_referral.domain.model import Policy
from tsunagu_referral.handlers import consent, housing
from tsunagu_referral.handlers.deliveries import on_delivery_failed
from tsunagu_referral.handlers.partner_responses import on_partner_responded
from tsunagu_referral.handlers.referrals import on_consultation_registered, on_need_identified
from tsunagu_referral.handlers.reports import OWN, PROJECTIONS, project_appended, projecting
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import BATCH, BatchEventConsumer, Handler


def subscribe(runtime: Runtime, policy: Policy) -> None:
    def handle(handler):
        return in_unit_of_work(Repository, partial(handler, policy=policy), on_append=project_appended)

    async def lock_sheets_first(conn, envelopes) -> None:
        await Repository(conn).lock_sheets([envelope.data.case_id for envelope in envelopes])

    # Batches: one transaction for what the broker has ready (many records under load, one when
    # quiet), each record applied in order and exactly once as it would be alone; a batch takes its
    # cases' sheet locks first, in one order (adapters/repository.py).
    consumed = {
        INTAKE_CASES: {
            ConsultationRegistered: handle(on_consultation_registered),
            NeedIdentified: handle(on_need_identified),
            ConsentGranted: handle(consent.on_consent_granted),
            ConsentWithdrawn: handle(consent.on_consent_withdrawn),
            StatutoryBasisRecorded: handle(consent.on_basis_recorded),
            StatutoryBasisEnded: handle(consent.on_basis_ended),
        },
        PARTNER_RESPONSES: {
            PartnerResponded: handle(on_partner_responded),
            DeliveryFailed: handle(on_delivery_failed),
        },
        TENANCIES: {
            HousingSupportOpened: handle(housing.on_support_opened),
            TenancyStageChanged: handle(housing.on_stage_changed),
            CheckInRecorded: handle(housing.on_check_in_recorded),
        },
    }
    if unread := set(PROJECTIONS) - set(consumed) - {OWN}:
        raise RuntimeError(f"the report read model is built from {sorted(t.name for t in unread)}, "
                           "which no consumer of the service reads")
    for topic, handlers in consumed.items():
        BatchEventConsumer(runtime, topic, with_projections(topic, handlers), max_records=BATCH,
                           lock_first=lock_sheets_first).subscribe()


# The report read model ---------------------------------------------------------------------------

def with_projections(topic: Topic, handlers: dict[type[Event], Handler]) -> dict[type[Event], Handler]:
    """The service's handlers of `topic`, each followed in its transaction by the projection of its event
    into the report read model, when the model is built from it; an event the model needs and the
    service does not act on gets a handler that only projects it. A batch that fails is applied again
    record by record, the projection with its handler."""
    projections = {} if topic == OWN else PROJECTIONS.get(topic, {})
    return {event: in_turn(handlers.get(event), projecting(topic)) if event in projections else handlers[event]
            for event in {**handlers, **projections}}


def in_turn(*handlers: Handler | None) -> Handler:
    """One handler that runs each of `handlers` (None: none) in order, in the same transaction."""
    async def apply(conn, envelope) -> None:
        for handler in handlers:
            if handler is not None:
                await handler(conn, envelope)
    return apply
