"""A consumer's batch of several cases takes their sheet locks first, in case order."""

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest

from tsunagu_contracts import uuid7
from tsunagu_contracts.codes import NeedCategory, Urgency
from tsunagu_referral.adapters.repository import Repository
from tsunagu_referral.domain.model import Sheet

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("first", ["all of the batch's sheet locks first", "each sheet's lock as its event comes"])
async def test_two_batches_with_the_same_cases_in_opposite_orders_never_wait_on_each_other_in_a_circle(
        migrated_database, first):
    """The intake consumer's batch and the partner responses consumer's, each with events of the same
    two cases in opposite orders: sheet locks taken first in case order queue; taken as each event
    comes they can close a circle, which PostgreSQL breaks by failing one batch (the control)."""
    url = await migrated_database("referral")
    a, b = uuid7(), uuid7()
    setup = await asyncpg.connect(url)
    try:
        for case in (a, b):
            await Repository(setup).open_sheet(Sheet(uuid7(), case, uuid7(), "142166", ["no_food"],
                                                     NeedCategory.NO_FOOD, Urgency.HIGH, datetime.now(UTC)))
    finally:
        await setup.close()
    both_hold_one = asyncio.Barrier(2)

    async def batch(cases: list[UUID]) -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                repo = Repository(conn)
                if first == "all of the batch's sheet locks first":
                    await repo.lock_sheets(cases)
                for n, case in enumerate(cases):
                    await repo.sheet(case, lock=True)
                    if n == 0 and first != "all of the batch's sheet locks first":
                        await both_hold_one.wait()
        finally:
            await conn.close()

    outcomes = await asyncio.gather(batch([a, b]), batch([b, a]), return_exceptions=True)
    if first == "all of the batch's sheet locks first":
        assert outcomes == [None, None]
    else:
        assert any(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes)
