"""What partner-notification consumes: every event a partner might be told of, and consents."""

from __future__ import annotations

from tsunagu_contracts import (
    INTAKE_CASES, REFERRALS, TENANCIES, CaseClosed, CaseReopened, ConsentGranted, ConsentWithdrawn,
    ConsultationRegistered, NeedIdentified, ReferralRequested, StatutoryBasisEnded, StatutoryBasisRecorded,
)
from tsunagu_outbox import in_unit_of_work
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.handlers import fan_out as f
from tsunagu_servicehost import Runtime
from tsunagu_partners.adapters.held_events import HeldEvents
from tsunagu_servicehost.consumer import BATCH, BatchEventConsumer


def consumed(handler):
    """The handler as its consumer runs it: in the consumer's transaction, as a unit of work, with
    the whole envelope (a partner's delivery keeps the event's own id and source)."""
    return in_unit_of_work(Repository, handler, envelope=True)


async def lock_cases_first(conn, envelopes) -> None:
    """A batch takes the case locks of all its events first, in one order (adapters/held_events.py)."""
    await HeldEvents(conn).lock_cases([envelope.data.case_id for envelope in envelopes])


def subscribe(runtime: Runtime) -> None:
    # Batches: one transaction for what the broker has ready (many records under load, one when
    # quiet), each record applied in order and exactly once as it would be alone.
    def batches(topic, handlers) -> None:
        BatchEventConsumer(runtime, topic, handlers, max_records=BATCH, lock_first=lock_cases_first).subscribe()

    batches(INTAKE_CASES, {event: consumed(handler) for event, handler in {
        ConsultationRegistered: f.on_consultation, NeedIdentified: f.on_need, ConsentGranted: f.on_consent_granted,
        ConsentWithdrawn: f.on_consent_withdrawn, StatutoryBasisRecorded: f.on_basis_recorded,
        StatutoryBasisEnded: f.on_basis_ended,
    }.items()})
    own = {ReferralRequested: f.on_referral_requested, CaseClosed: f.on_case_closed, CaseReopened: f.on_case_reopened}
    batches(REFERRALS, {event: consumed(own.get(event, f.fan_out)) for event in REFERRALS.events})
    batches(TENANCIES, {event: consumed(f.fan_out) for event in TENANCIES.events})
