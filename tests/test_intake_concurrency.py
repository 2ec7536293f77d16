"""Intake's write paths that race, run at once on a real PostgreSQL database: each holds by the
rule stated beside its SQL (services/intake/src/tsunagu_intake/adapters/repository.py)."""

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from cryptography.fernet import Fernet

from tsunagu_contracts import CaseClosed, ConsentWithdrawn, uuid7
from tsunagu_contracts.codes import ConsentPurpose
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.adapters.repository import unit_of_work
from tsunagu_intake.domain.commands import EXAMPLE, RegisterConsultation
from tsunagu_intake.handlers import consents, consultations, provisions, referral_view
from tsunagu_servicehost.errors import Rejected
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
NOW = datetime.now(UTC)


@pytest.fixture
async def pool(migrated_database):
    async with asyncpg.create_pool(await migrated_database("intake"), min_size=2, max_size=10) as pool:
        yield pool


@pytest.fixture
def cipher() -> PersonalDataCipher:
    return PersonalDataCipher([Fernet.generate_key().decode()], b"index-key")


async def in_unit_of_work(pool, work):
    try:
        async with unit_of_work(pool) as uow:
            return await work(uow)
    except Rejected as rejected:
        return rejected


def register(cipher, **changes):
    cmd = RegisterConsultation.model_validate({**EXAMPLE, **changes})
    return lambda uow: consultations.register_consultation(uow, cmd, cipher=cipher, staff="counter-staff",
                                                           municipality_code="142166", now=NOW)


async def test_a_known_person_registered_at_several_counters_at_once_gets_one_case(pool, cipher):
    first = await in_unit_of_work(pool, register(cipher))
    closing = CaseClosed.model_validate({**CaseClosed.model_json_schema()["examples"][0], "case_id": str(first.case_id)})
    await in_unit_of_work(pool, lambda uow: referral_view.on_case_closed(uow, closing))

    results = await asyncio.gather(*(in_unit_of_work(pool, register(
        cipher, person=None, person_ref=str(first.person_ref), consents=[])) for _ in range(8)))

    async with pool.acquire() as conn:
        open_cases = await conn.fetchval("SELECT count(*) FROM cases WHERE person_ref = $1 AND closed_at IS NULL",
                                         first.person_ref)
    assert open_cases == 1 and len({r.case_id for r in results}) == 1
    assert first.case_id not in {r.case_id for r in results}, "the closed case is not joined"


async def test_two_withdrawals_of_one_consent_at_once_withdraw_it_once_and_refuse_the_other(pool, cipher):
    done = await in_unit_of_work(pool, register(cipher))
    results = await asyncio.gather(*(in_unit_of_work(pool, lambda uow: consents.withdraw_consent(
        uow, done.consent_ids[0], now=NOW)) for _ in range(4)))

    async with pool.acquire() as conn:
        withdrawn = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1",
                                        ConsentWithdrawn.type)
    assert withdrawn == 1 and sum(isinstance(r, Rejected) and r.why == "conflict" for r in results) == 3


# a provision and a withdrawal of the consent it rests on, at once ---------------------------------

PARTNER_ID = uuid7()


async def a_case_with_a_partners_consent(pool, cipher):
    done = await in_unit_of_work(pool, register(cipher, consents=[
        {"recipient": {"kind": "partner", "partner_id": str(PARTNER_ID)}, "purpose": "referral",
         "method": "written"}]))
    return done.case_id, done.consent_ids[0]


def provide(cipher, case_id):
    return lambda uow: provisions.provide_person(uow, case_id, partner_id=PARTNER_ID, purpose=ConsentPurpose.REFERRAL,
                                                 requested_by="service:partner-notification", cipher=cipher,
                                                 now=datetime.now(UTC))


async def waiting_for_a_lock(pool, task: asyncio.Task) -> None:
    """Until another session waits for a row lock (the task's), or the task is done."""
    async def waiting() -> int:
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND datname = current_database()")
    await eventually(waiting, until=lambda n: n > 0 or task.done())


async def test_a_withdrawal_committed_while_a_provision_waits_leaves_it_nothing_to_give_and_nothing_recorded(
        pool, cipher):
    case_id, consent_id = await a_case_with_a_partners_consent(pool, cipher)
    async with unit_of_work(pool) as withdrawing:
        await consents.withdraw_consent(withdrawing, consent_id, now=NOW)
        providing = asyncio.create_task(in_unit_of_work(pool, provide(cipher, case_id)))
        await waiting_for_a_lock(pool, providing)
        assert not providing.done(), "the provision waits for the withdrawal's row lock"

    refused = await providing
    async with pool.acquire() as conn:
        recorded = await conn.fetchval("SELECT count(*) FROM provisions")
    assert isinstance(refused, Rejected) and refused.why == "forbidden"
    assert recorded == 0


async def test_a_withdrawal_waits_for_a_provision_in_progress_which_is_recorded_before_it(pool, cipher):
    case_id, consent_id = await a_case_with_a_partners_consent(pool, cipher)
    async with unit_of_work(pool) as providing:
        given = await provide(cipher, case_id)(providing)
        withdrawing = asyncio.create_task(in_unit_of_work(
            pool, lambda uow: consents.withdraw_consent(uow, consent_id, now=datetime.now(UTC))))
        await waiting_for_a_lock(pool, withdrawing)
        assert not withdrawing.done(), "the withdrawal waits for the provision's share lock"

    await withdrawing
    async with pool.acquire() as conn:
        provided_at = await conn.fetchval("SELECT provided_at FROM provisions WHERE case_id = $1", case_id)
        withdrawn_at = await conn.fetchval("SELECT withdrawn_at FROM consents WHERE consent_id = $1", consent_id)
    assert given["name"] and provided_at < withdrawn_at
