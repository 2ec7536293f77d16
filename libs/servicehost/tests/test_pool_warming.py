"""A service opens some of its pool's connections as it starts, without holding any it cannot use."""

import asyncio

import asyncpg
import pytest

from tsunagu_servicehost.app import open_connections, without_session_state

pytestmark = pytest.mark.stack


async def test_warming_opens_half_the_pool_and_gives_every_connection_back(scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=0, max_size=10, reset=without_session_state)
    try:
        await open_connections(pool, 6)
        assert pool.get_size() == 5 and pool.get_idle_size() == 5
    finally:
        await pool.close()


async def test_warming_a_pool_whose_connections_are_kept_elsewhere_waits_for_none_of_them(scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=0, max_size=4, reset=without_session_state)
    kept = [await pool.acquire() for _ in range(3)]  # the relay, the sender and a request keep theirs
    try:
        await asyncio.wait_for(open_connections(pool, 6, wait_s=0.2), timeout=30)
        free = await pool.acquire(timeout=1)  # the warming kept nothing back
        await pool.release(free)
    finally:
        for conn in kept:
            await pool.release(conn)
        await pool.close()
