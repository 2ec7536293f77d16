"""Housing support's write paths that race, run at once on a real PostgreSQL database: each holds
by the rule stated beside its SQL (adapters/repository.py)."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_contracts import CheckInRecorded, HousingSupportOpened, Recipient, ReferralRequested, ReferralSheetOpened, uuid7
from tsunagu_contracts.codes import Division
from tsunagu_contracts.japan import JST
from tsunagu_housing.adapters.repository import Repository
from tsunagu_housing.adapters.sealing import Sealer
from tsunagu_housing.bootstrap import build_service
from tsunagu_housing.domain.commands import CheckInSchedule, MoveStage, OpenSupport, RecordCheckIn
from tsunagu_servicehost.errors import Rejected
from tsunagu_housing.domain.model import Actor
from tsunagu_housing.handlers import check_ins, supports
from tsunagu_outbox import UnitOfWork
from tsunagu_servicehost import ServiceSettings, build_app
from tsunagu_teststack.tokens import bearer_token, token_settings

pytestmark = pytest.mark.stack
COUNCIL = Actor("council-staff", "council")
NOW = datetime.now(UTC)
HOME = {"landlord": "ざま不動産", "address": "座間市1-1", "moved_in_on": "2026-12-01"}


@pytest.fixture
async def pool(migrated_database):
    async with asyncpg.create_pool(await migrated_database("housing-support"), min_size=2, max_size=8) as pool:
        yield pool


async def in_transaction(pool, work):
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, Repository(conn))
        result = await work(uow)
        await uow.flush()
        return result


async def a_case(pool) -> object:
    case_id = uuid7()
    await in_transaction(pool, lambda uow: supports.on_sheet_opened(uow, ReferralSheetOpened(
        case_id=case_id, municipality_code="142166", occurred_at=NOW, sheet_id=uuid7(), person_ref=uuid7(),
        needs=("housing",), primary_need="housing", urgency="high")))
    return case_id


def referral(case_id) -> ReferralRequested:
    return ReferralRequested(case_id=case_id, municipality_code="142166", occurred_at=NOW, referral_id=uuid7(),
                             recipient=Recipient.of_division(Division.HOUSING), sheet_id=uuid7(), need="housing",
                             urgency="high", accept_by=NOW + timedelta(days=3), candidate_rank=1)


async def a_tenancy(pool, sealer: Sealer, moved_in: datetime):
    """A support opened by hand a month before `moved_in`, the person moved in then."""
    case = await a_case(pool)
    support = await in_transaction(pool, lambda uow: supports.open_by_hand(
        uow, OpenSupport(case_id=case), by=COUNCIL, now=moved_in - timedelta(days=30)))
    for stage, body in (("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME})):
        await in_transaction(pool, lambda uow, s=stage, b=body: supports.move_stage(
            uow, support.support_id, MoveStage(to_stage=s, **b), by=COUNCIL, now=moved_in,
            sealer=sealer, default_every_days=14))
    return support


async def outcome(coroutine):
    try:
        return await coroutine
    except Rejected as rejected:
        return rejected


async def test_the_referral_consumer_and_a_person_opening_by_hand_at_once_open_one_support_per_case(pool):
    cases = [await a_case(pool) for _ in range(20)]
    results = await asyncio.gather(*(outcome(in_transaction(pool, work)) for case in cases for work in (
        lambda uow, c=case: supports.on_referral_requested(uow, referral(c)),
        lambda uow, c=case: supports.open_by_hand(uow, OpenSupport(case_id=c), by=COUNCIL, now=NOW))))

    async with pool.acquire() as conn:
        per_case = await conn.fetch("SELECT case_id, count(*) AS n FROM supports GROUP BY case_id")
        opened = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1",
                                     HousingSupportOpened.type)
    assert {r["case_id"]: r["n"] for r in per_case} == {c: 1 for c in cases}
    assert opened == len(cases), "one HousingSupportOpened per case"
    refused = [r for r in results if isinstance(r, Rejected)]
    assert all(r.why == "conflict" for r in refused), "the person who lost the race is told, not given a second"


async def test_two_moves_of_one_support_at_once_leave_one_move_and_refuse_the_other(pool):
    case = await a_case(pool)
    support = await in_transaction(pool, lambda uow: supports.open_by_hand(uow, OpenSupport(case_id=case),
                                                                            by=COUNCIL, now=NOW))
    sealer = Sealer([Fernet.generate_key().decode()])

    def to(stage):
        return lambda uow: supports.move_stage(uow, support.support_id, MoveStage(to_stage=stage), by=COUNCIL,
                                               now=NOW, sealer=sealer, default_every_days=14)

    results = await asyncio.gather(*(outcome(in_transaction(pool, to("application"))) for _ in range(5)))
    async with pool.acquire() as conn:
        moves = await conn.fetchval("SELECT count(*) FROM stage_changes WHERE to_stage = 'application'")
    assert moves == 1 and sum(isinstance(r, Rejected) for r in results) == 4


async def test_the_missed_check_in_timer_and_a_recording_at_once_never_report_an_answered_check_in(pool):
    sealer = Sealer([Fernet.generate_key().decode()])
    due = (datetime.now(JST) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    supports_and_leads = []
    for _ in range(10):
        support = await a_tenancy(pool, sealer, moved_in=due - timedelta(days=1))
        rule = {"kind": "safety_contact", "grace_minutes": 60,
                "rrule": f"DTSTART;TZID=Asia/Tokyo:{due:%Y%m%dT%H%M%S}\nRRULE:FREQ=DAILY"}
        await in_transaction(pool, lambda uow, s=support: check_ins.set_schedule(
            uow, s.support_id, CheckInSchedule.model_validate({"rules": [rule]}), by=COUNCIL,
            now=due - timedelta(hours=1), default_every_days=14))
        supports_and_leads.append(support)

    # At `late`, the grace has passed: a recording made at `due` (in its window) races the timer.
    late = due + timedelta(minutes=61)
    recordings = [in_transaction(pool, lambda uow, s=s: check_ins.record_check_in(
        uow, s.support_id, RecordCheckIn(kind="safety_contact", result="well", member_id=s.lead_member_id, at=due),
        by=COUNCIL, now=late)) for s in supports_and_leads]
    timers = [in_transaction(pool, lambda uow: check_ins.report_missed(uow, now=late)) for _ in range(3)]
    await asyncio.gather(*recordings, *timers)
    rest = await in_transaction(pool, lambda uow: check_ins.report_missed(uow, now=late))

    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT support_id, status, scheduled_for FROM check_ins ORDER BY at")
        cursors = await conn.fetch("SELECT due_at FROM check_in_rules")
    recorded = {(r["support_id"]) for r in rows if r["status"] == "recorded" and r["scheduled_for"] == due}
    missed = [r for r in rows if r["status"] == "missed"]
    assert rest == 0, "nothing is left for a later round"
    assert all(c["due_at"] == due + timedelta(days=1) for c in cursors), "every cursor moved past today's check-in"
    assert not {r["support_id"] for r in missed} & recorded, "a check-in that answered was never also reported missed"
    assert len(recorded) + len(missed) == len(supports_and_leads)


async def test_one_check_in_sent_several_times_at_once_with_one_idempotency_key_is_recorded_once(pool):
    support = await a_tenancy(pool, Sealer([Fernet.generate_key().decode()]), moved_in=NOW - timedelta(days=1))
    visit = RecordCheckIn(kind="visit", result="well", member_id=support.lead_member_id)

    def record(cmd: RecordCheckIn, key: str | None):
        return outcome(in_transaction(pool, lambda uow: check_ins.record_check_in(
            uow, support.support_id, cmd, by=COUNCIL, now=NOW, idempotency_key=key)))

    taps = await asyncio.gather(*(record(visit, "tap-1") for _ in range(4)))
    another_result = await record(RecordCheckIn(kind="visit", result="not_at_home",
                                                member_id=support.lead_member_id), "tap-1")
    another_tap = await record(visit, "tap-2")
    without_key = await record(visit, None)

    async with pool.acquire() as conn:
        recorded = await conn.fetch("SELECT check_in_id FROM check_ins WHERE support_id = $1", support.support_id)
        published = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1",
                                         CheckInRecorded.type)
    assert len(set(taps)) == 1, f"every repeat is answered with the first check-in: {taps}"
    assert {r["check_in_id"] for r in recorded} == {taps[0], another_tap, without_key}
    assert published == 3, "one CheckInRecorded per check-in recorded"
    assert isinstance(another_result, Rejected) and another_result.why == "invalid"
    assert another_result.message_ja == "同じ Idempotency-Key で異なる内容が送られました。"


async def test_the_idempotency_key_header_of_a_check_in_replays_the_first_answer_over_http(pool):
    support = await a_tenancy(pool, Sealer([Fernet.generate_key().decode()]), moved_in=NOW - timedelta(days=1))
    app = build_app(build_service(), ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused",
                                                     **token_settings("housing-support")))
    app.state.runtime.pool = pool
    visit = {"kind": "visit", "result": "well", "member_id": str(support.lead_member_id)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://housing-support") as client:
        async def post(key: str) -> httpx.Response:
            return await client.post(f"/v1/supports/{support.support_id}/check-ins", json=visit, headers={
                "Authorization": f"Bearer {bearer_token('council')}", "Idempotency-Key": key})
        first, again, too_long = await post("tap-1"), await post("tap-1"), await post("x" * 201)

    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "Idempotency-Key"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM check_ins WHERE support_id = $1", support.support_id) == 1
