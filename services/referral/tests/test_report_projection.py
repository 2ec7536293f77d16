"""Each event reaches the report read model in the transaction that makes or applies it: referral's
own as its unit of work appends them, intake's and partners' as the service's consumers apply them."""

import asyncpg
import pytest

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, REFERRALS, ConsultationRegistered, DeliveryFailed, Envelope, ReferralRequested,
    uuid7,
)
from tsunagu_outbox import unit_of_work_on
from tsunagu_outbox.locks import remembering_locks
from tsunagu_referral.adapters.reports import CONSUMER
from tsunagu_referral.adapters.repository import Repository
from tsunagu_referral.entrypoints.kafka import with_projections
from tsunagu_referral.handlers.reports import PROJECTIONS, project_appended

pytestmark = pytest.mark.stack


def example(event_type, **changes):
    return event_type.model_validate({**event_type.model_json_schema()["examples"][0], **changes})


def envelope_of(event) -> Envelope:
    return Envelope(data=event, id=uuid7(), source="/tsunagu/test")


async def consume(conn: asyncpg.Connection, handlers: dict, envelope: Envelope) -> None:
    """As the service's consumer applies one event: its own record, then the handler, one transaction."""
    async with conn.transaction():
        with remembering_locks():
            await conn.execute("INSERT INTO applied_events (consumer, event_id) VALUES ('referral', $1)", envelope.id)
            await handlers[type(envelope.data)](conn, envelope)


async def recorded_by_the_projection(conn: asyncpg.Connection) -> set:
    return {r["event_id"] for r in await conn.fetch("SELECT event_id FROM applied_events WHERE consumer = $1",
                                                    CONSUMER)}


async def test_an_event_the_service_consumes_is_applied_and_projected_in_one_transaction(migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    applied = []

    async def service_handler(conn, envelope):
        applied.append(envelope.id)

    envelope = envelope_of(example(ConsultationRegistered))
    try:
        await consume(conn, with_projections(INTAKE_CASES, {ConsultationRegistered: service_handler}), envelope)
        projected = await conn.fetchval("SELECT count(*) FROM report_consultations WHERE consultation_id = $1",
                                        envelope.data.consultation_id)
        recorded = await recorded_by_the_projection(conn)
    finally:
        await conn.close()

    assert applied == [envelope.id], "the service's own handler runs"
    assert projected == 1
    assert recorded == {envelope.id}, "recorded as the projection's, so that a rebuild meanwhile skips it"


async def test_an_event_a_rebuild_projected_first_is_not_projected_again_by_the_service(migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    envelope = envelope_of(example(DeliveryFailed))
    try:
        await conn.execute("INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2)", CONSUMER, envelope.id)
        await consume(conn, with_projections(PARTNER_RESPONSES, {}), envelope)
        failures = await conn.fetchval("SELECT count(*) FROM report_delivery_failures")
    finally:
        await conn.close()

    assert failures == 0


async def test_the_service_s_own_events_are_projected_as_its_unit_of_work_appends_them(migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    requested = [example(ReferralRequested, referral_id=str(uuid7())) for _ in range(2)]

    class Refused(Exception):
        pass

    try:
        async with unit_of_work_on(conn, Repository, on_append=project_appended) as uow:
            uow.emit(*requested)
        with pytest.raises(Refused):
            async with unit_of_work_on(conn, Repository, on_append=project_appended) as uow:
                uow.emit(example(ReferralRequested, referral_id=str(uuid7())))
                raise Refused()
        projected = {r["referral_id"] for r in await conn.fetch("SELECT referral_id FROM report_referrals")}
        recorded = await recorded_by_the_projection(conn)
        published_as = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")}
    finally:
        await conn.close()

    assert projected == {e.referral_id for e in requested}, "the refused unit of work projected nothing"
    assert recorded == published_as, "each recorded under the id it is published with"


def test_no_consumer_projects_referral_s_own_events_and_every_other_topic_s_are_projected_by_its_consumer():
    async def service_handler(conn, envelope):
        pass

    own = with_projections(REFERRALS, {ReferralRequested: service_handler})
    intake = with_projections(INTAKE_CASES, {})

    assert own == {ReferralRequested: service_handler}, "projected as appended, not again when read back"
    assert intake.keys() == PROJECTIONS[INTAKE_CASES].keys(), "an event the service does not act on is projected"
