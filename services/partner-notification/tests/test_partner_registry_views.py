"""The partner registry as coordinators read it, on a migrated scratch database: every partner with
its webhook's state and subscription, active ones first, and never a credential."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from uuid import UUID

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet

from tsunagu_contracts import uuid7
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work_on
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_partners.handlers.registry import get_partner, list_partners, register_partner
from tsunagu_servicehost.errors import Rejected, Why

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])


@pytest.fixture
async def pool(migrated_database):
    async with asyncpg.create_pool(await migrated_database("partner-notification"), min_size=1, max_size=4) as p:
        yield p


async def in_transaction(pool: asyncpg.Pool, work):
    async with pool.acquire() as conn, unit_of_work_on(conn, Repository) as uow:
        return await work(uow)


async def a_partner(pool: asyncpg.Pool, name: str, *, webhook: bool = True) -> dict:
    return await in_transaction(pool, lambda uow: register_partner(uow, RegisterPartner(
        name=name, need_categories=["no_food"], areas=["142166"],
        contact={"department": "相談窓口", "email": "desk@example.org"},
        webhook_url="https://partner.example.org/hook" if webhook else None, kafka_topic=not webhook),
        partner_id=uuid7(), cipher=CIPHER, now=MORNING))


async def test_the_registry_lists_each_partner_with_its_webhook_state_active_ones_first(pool):
    food_bank = await a_partner(pool, "あおばフードバンク")
    gone = await a_partner(pool, "いなほ食堂")
    kafka_only = await a_partner(pool, "うみべ相談室", webhook=False)
    deactivated = await a_partner(pool, "ああ終了した団体")
    await in_transaction(pool, lambda uow: uow.repo.registry.disable_webhook(UUID(gone["partner_id"])))
    await in_transaction(pool, lambda uow: uow.repo.registry.deactivate(UUID(deactivated["partner_id"])))

    listed = await in_transaction(pool, list_partners)

    by_id = {str(p.partner_id): p for p in listed}
    assert [str(p.partner_id) for p in listed] == [
        food_bank["partner_id"], gone["partner_id"], kafka_only["partner_id"], deactivated["partner_id"]]
    assert by_id[food_bank["partner_id"]].webhook.state == "enabled"
    assert by_id[gone["partner_id"]].webhook.state == "disabled" and by_id[gone["partner_id"]].webhook.disabled_at
    assert by_id[kafka_only["partner_id"]].webhook.state == "none" and by_id[kafka_only["partner_id"]].kafka_topic
    assert not by_id[deactivated["partner_id"]].active and by_id[deactivated["partner_id"]].deactivated_at
    assert [n.value for n in by_id[food_bank["partner_id"]].subscription.need_categories] == ["no_food"]


async def test_a_listing_carries_no_contact_and_no_credential(pool):
    partner = await a_partner(pool, "えがおフードバンク")

    listed = [p.model_dump(mode="json") for p in await in_transaction(pool, list_partners)]

    text = repr(listed)
    assert partner["api_token"] not in text and partner["webhook_secret"] not in text
    assert "contact" not in listed[0] and "webhook_url" not in listed[0]


async def test_a_partners_record_adds_its_contact_desk_and_webhook_url(pool):
    partner = await a_partner(pool, "おかしの家")

    record = await in_transaction(pool, lambda uow: get_partner(uow, UUID(partner["partner_id"])))

    assert record.contact == {"department": "相談窓口", "email": "desk@example.org", "phone": None}
    assert record.webhook_url == "https://partner.example.org/hook" and record.name == "おかしの家"
    assert partner["api_token"] not in record.model_dump_json()


async def test_an_unknown_partner_is_not_found(pool):
    with pytest.raises(Rejected) as refused:
        await in_transaction(pool, lambda uow: get_partner(uow, uuid7()))

    assert refused.value.why == Why.NOT_FOUND
