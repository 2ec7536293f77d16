"""Each service's migrations apply to an empty database, and a second run changes nothing."""

import asyncio

import asyncpg
import pytest

from tsunagu_teststack import ServiceProcess
from tsunagu_teststack.infrastructure import stack_config

SERVICES = list(stack_config()["services"])


async def tables_and_revision(database_url: str) -> tuple[set[str], str]:
    connection = await asyncpg.connect(database_url)
    try:
        tables = {r["tablename"] for r in await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        revision = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    return tables, revision


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_apply_from_empty_and_twice_without_harm(service, infrastructure, scratch_database,
                                                                   tmp_path):
    process = ServiceProcess(service, kafka_bootstrap=infrastructure.kafka_bootstrap,
                             database_url=scratch_database, log_dir=tmp_path)

    await process.migrate()
    first = await tables_and_revision(scratch_database)
    await process.migrate()
    second = await tables_and_revision(scratch_database)

    assert {"outbox", "applied_events", "alembic_version"} <= first[0]
    assert first == second


async def test_two_services_migrated_at_once_in_the_test_process_each_get_their_own_tables(migrated_database):
    referral, partners = await asyncio.gather(migrated_database("referral"), migrated_database("partner-notification"))

    referral_tables, _ = await tables_and_revision(referral)
    partner_tables, _ = await tables_and_revision(partners)
    assert "referrals" in referral_tables and "referrals" not in partner_tables
    assert "partners" in partner_tables and "partners" not in referral_tables
