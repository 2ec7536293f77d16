"""The service's own consumers project intake's and partners' events into the report read model in
the transaction that applies them; referral's own events are left to the read model's consumer."""

import asyncpg
import pytest

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, REFERRALS, ConsultationRegistered, DeliveryFailed, Envelope, ReferralRequested,
    uuid7,
)
from tsunagu_outbox.locks import remembering_locks
from tsunagu_referral.adapters.reports import CONSUMER
from tsunagu_referral.entrypoints.kafka import with_projections
from tsunagu_referral.handlers.reports import PROJECTIONS

pytestmark = pytest.mark.stack


def example(event_type) -> Envelope:
    return Envelope(data=event_type.model_validate(event_type.model_json_schema()["examples"][0]), id=uuid7(),
                    source="/tsunagu/test")


async def consume(conn: asyncpg.Connection, handlers: dict, envelope: Envelope) -> None:
    """As the service's consumer applies one event: its own record, then the handler, one transaction."""
    async with conn.transaction():
        with remembering_locks():
            await conn.execute("INSERT INTO applied_events (consumer, event_id) VALUES ('referral', $1)", envelope.id)
            await handlers[type(envelope.data)](conn, envelope)


async def test_an_event_the_service_consumes_is_applied_and_projected_in_one_transaction(migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    applied = []

    async def service_handler(conn, envelope):
        applied.append(envelope.id)

    envelope = example(ConsultationRegistered)
    try:
        await consume(conn, with_projections(INTAKE_CASES, {ConsultationRegistered: service_handler}), envelope)
        projected = await conn.fetchval("SELECT count(*) FROM report_consultations WHERE consultation_id = $1",
                                        envelope.data.consultation_id)
        recorded = await conn.fetchval("SELECT consumer FROM applied_events WHERE event_id = $1 AND consumer = $2",
                                       envelope.id, CONSUMER)
    finally:
        await conn.close()

    assert applied == [envelope.id], "the service's own handler runs"
    assert projected == 1
    assert recorded == CONSUMER, "recorded as the projection's, so that a rebuild meanwhile skips it"


async def test_an_event_a_rebuild_projected_first_is_not_projected_again_by_the_service(migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    envelope = example(DeliveryFailed)
    try:
        await conn.execute("INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2)", CONSUMER, envelope.id)
        await consume(conn, with_projections(PARTNER_RESPONSES, {}), envelope)
        failures = await conn.fetchval("SELECT count(*) FROM report_delivery_failures")
    finally:
        await conn.close()

    assert failures == 0


def test_referral_s_own_events_are_left_to_the_read_model_s_consumer_and_every_other_topic_is_projected():
    async def service_handler(conn, envelope):
        pass

    own = with_projections(REFERRALS, {ReferralRequested: service_handler})
    intake = with_projections(INTAKE_CASES, {})

    assert own == {ReferralRequested: service_handler}, "read back from its topic, not projected twice"
    assert intake.keys() == PROJECTIONS[INTAKE_CASES].keys(), "an event the service does not act on is projected"
