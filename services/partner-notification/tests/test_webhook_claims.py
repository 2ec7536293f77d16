"""The webhook sender's claim reads the due deliveries, not a partner's history: a partner that
was sent many deliveries costs each claim no more than a new one."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from tsunagu_outbox import unit_of_work_on
from tsunagu_partners.adapters.repository import Repository

pytestmark = pytest.mark.stack
HISTORY = 10_000
TODAY = date(2026, 11, 30)


async def a_partner_with_a_long_history(conn: asyncpg.Connection, delivered: int) -> uuid.UUID:
    """A partner with a webhook, `delivered` deliveries done long ago and two due now, each on a case
    the partner holds a statutory basis for (so that nothing but the lease stops a claim)."""
    partner_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO partners (partner_id, name, need_categories, areas, contact, api_token_hash, webhook_url, "
        "webhook_secret, registered_at) VALUES ($1::uuid, 'ざまフードバンク', '{no_food}', '{142166}', '{}', "
        "decode(md5($1::text), 'hex'), 'https://partner.example.org/hook', 'sealed', now())", partner_id)
    await conn.execute(
        "INSERT INTO deliveries (delivery_id, partner_id, event_id, event_type, case_id, body, status, attempts, "
        "next_attempt_at, created_at, delivered_at) "
        "SELECT gen_random_uuid(), $1, gen_random_uuid(), 'tsunagu.referral.requested.v1', gen_random_uuid(), "
        "repeat('x', 400), CASE WHEN n > $2 THEN 'pending' ELSE 'delivered' END, 0, now() - interval '1 day', "
        "now() - interval '1 day', CASE WHEN n > $2 THEN NULL ELSE now() END FROM generate_series(1, $2 + 2) AS n",
        partner_id, delivered)
    await conn.execute(
        "INSERT INTO permissions (grant_id, case_id, partner_id, person_ref, basis, purpose) "
        "SELECT gen_random_uuid(), case_id, partner_id, gen_random_uuid(), 'support_conference_swa_106_6', 'referral' "
        "FROM deliveries WHERE status = 'pending'")
    return partner_id


async def blocks_read(conn: asyncpg.Connection) -> int:
    """Blocks of `deliveries` and its indexes read so far in this transaction."""
    return await conn.fetchval(
        "SELECT sum(pg_stat_get_xact_blocks_fetched(c.oid)) FROM pg_class c WHERE c.oid = 'deliveries'::regclass "
        "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'deliveries'::regclass)")


@pytest.mark.parametrize("analyzed", [False, True], ids=["before-analyze", "after-analyze"])
async def test_a_claim_reads_a_few_blocks_however_many_deliveries_the_partner_had(migrated_database, analyzed):
    conn = await asyncpg.connect(await migrated_database("partner-notification"))
    try:
        await a_partner_with_a_long_history(conn, HISTORY)
        if analyzed:
            await conn.execute("ANALYZE deliveries")
        history_blocks = await conn.fetchval("SELECT pg_relation_size('deliveries') / current_setting('block_size')::int")
        async with unit_of_work_on(conn, Repository) as uow:
            before = await blocks_read(conn)
            claimed = await uow.repo.deliveries.claim(TODAY, {}, per_partner=4, limit=64, lease_s=30)
            read = await blocks_read(conn) - before
    finally:
        await conn.close()

    assert len(claimed) == 2
    assert history_blocks > 500, "the history fills many blocks"
    assert read < 100, f"the claim read {read} blocks of deliveries and its indexes"
