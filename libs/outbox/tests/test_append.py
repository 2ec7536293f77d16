"""Events appended in one transaction keep their order, and the relay is woken once, on commit."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from tsunagu_contracts import CaseClosed, CaseReopened
from tsunagu_outbox import ATTEMPT_STATEMENTS, NOTIFY_CHANNEL, SCHEMA_STATEMENTS, append, unit_of_work_on

pytestmark = pytest.mark.stack


@pytest.fixture
async def conn(scratch_database):
    conn = await asyncpg.connect(scratch_database)
    for statement in SCHEMA_STATEMENTS + ATTEMPT_STATEMENTS:
        await conn.execute(statement)
    yield conn
    await conn.close()


def events_of_one_case(n: int) -> list:
    case_id, now = uuid.uuid4(), datetime.now(UTC)
    return [(CaseClosed(case_id=case_id, municipality_code="142166", occurred_at=now, reason="stable_with_support")
             if i % 2 else CaseReopened(case_id=case_id, municipality_code="142166", occurred_at=now,
                               consultation_id=uuid.uuid4()))
            for i in range(n)]


async def test_events_appended_together_get_ids_in_the_order_given_and_one_wake_on_commit(conn, scratch_database):
    listener = await asyncpg.connect(scratch_database)
    woken: list[str] = []
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: woken.append(args[2]))
    try:
        events = events_of_one_case(7)
        async with conn.transaction():
            await append(conn, *events)
            await asyncio.sleep(0.2)
            assert woken == [], "nothing is announced before the rows are visible"
        rows = await conn.fetch("SELECT headers->>'ce_type' AS type, topic, record_key FROM outbox ORDER BY id")
        assert [r["type"] for r in rows] == [e.type for e in events]
        assert {r["record_key"] for r in rows} == {str(events[0].case_id)}
        for _ in range(50):
            if woken:
                break
            await asyncio.sleep(0.05)
        assert woken == [NOTIFY_CHANNEL]
    finally:
        await listener.close()


async def test_appending_nothing_writes_nothing(conn):
    async with conn.transaction():
        await append(conn)
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_appending_outside_a_transaction_is_refused(conn):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        await append(conn, *events_of_one_case(1))


async def test_a_unit_of_work_hands_what_it_appended_to_its_service_in_the_same_transaction(conn):
    events = events_of_one_case(3)
    seen: list[tuple] = []

    async def on_append(conn, envelopes) -> None:
        stored = await conn.fetch("SELECT event_id FROM outbox ORDER BY id")  # visible: the same transaction
        seen.append(([e.data for e in envelopes], [e.id for e in envelopes], [r["event_id"] for r in stored]))

    class Refused(Exception):
        pass

    async with unit_of_work_on(conn, lambda conn: None, on_append=on_append) as uow:
        uow.emit(*events)
    with pytest.raises(Refused):
        async with unit_of_work_on(conn, lambda conn: None, on_append=on_append) as uow:
            uow.emit(*events_of_one_case(1))
            raise Refused()
    async with unit_of_work_on(conn, lambda conn: None, on_append=on_append):
        pass  # nothing emitted

    [(data, ids, stored)] = seen
    assert data == events, "each event, in the order emitted"
    assert ids == stored, "under the ids it is published with"
