"""A projection batch holds off the reports' rebuild with one shared lock, asked for once."""

import asyncio

import asyncpg
import pytest

from tsunagu_outbox.locks import remembering_locks
from tsunagu_referral.adapters.reports import ReportsStore

pytestmark = pytest.mark.stack


async def test_a_batch_asks_for_the_reports_lock_once_holds_it_shared_and_the_next_batch_asks_again(
        migrated_database):
    conn = await asyncpg.connect(await migrated_database("referral"))
    asked: list[str] = []
    conn.add_query_logger(lambda logged: asked.append(logged.query) if "advisory_xact_lock" in logged.query else None)
    try:
        for batch in range(2):
            async with conn.transaction():
                with remembering_locks():  # as the consumer's transaction
                    for _ in range(3):  # three events of the batch
                        await ReportsStore(conn).hold_off_rebuild()
                    assert await conn.fetchval("SELECT mode FROM pg_locks WHERE locktype = 'advisory' "
                                               "AND pid = pg_backend_pid()") == "ShareLock"
            await asyncio.sleep(0)  # the query logger is called soon after each statement
            assert len(asked) == batch + 1
    finally:
        await conn.close()
