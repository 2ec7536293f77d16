"""A partner's inbox (GET /v1/partners/{partner_id}/referrals): the referrals addressed to it, newest
first, with their deadline, its last answer and their status, and nothing about the person.

The service's HTTP app runs in the test's process on a migrated scratch database; referrals and
consents arrive through the consumers' own handlers, each in its own transaction.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from uuid import UUID

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet

from tsunagu_contracts import ConsentGranted, Envelope, ReferralRequested, uuid7
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work_on
from tsunagu_partners.adapters.referrals import Referrals
from tsunagu_partners.adapters.repository import Repository
from tsunagu_partners.bootstrap import build_service
from tsunagu_partners.domain.commands import AddressedReferral, RegisterPartner
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.entrypoints.kafka import consumed
from tsunagu_partners.handlers.fan_out import on_consent_granted, on_referral_requested
from tsunagu_partners.handlers.registry import register_partner
from tsunagu_servicehost import ServiceSettings, build_app
from tsunagu_teststack.tokens import bearer_token, token_settings

pytestmark = pytest.mark.stack

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
ACCEPT_BY = datetime(2026, 12, 2, 17, 0, tzinfo=JST)
CIPHER = MultiFernet([Fernet(base64.urlsafe_b64encode(os.urandom(32)))])


@pytest.fixture
async def pool(migrated_database):
    async with asyncpg.create_pool(await migrated_database("partner-notification"), min_size=1, max_size=4) as made:
        yield made


@pytest.fixture
def api(pool):
    """The service's public API over the scratch database, as `serve` builds it (its clients unstarted)."""
    app = build_app(build_service(), ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused",
                                                     **token_settings("partner-notification")))
    app.state.runtime.pool = pool
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://partner-notification")


async def a_partner(pool, name: str = "ざまフードバンク") -> dict:
    async with pool.acquire() as conn, unit_of_work_on(conn, Repository) as uow:
        return await register_partner(uow, RegisterPartner(
            name=name, need_categories=["no_food", "housing"], areas=["142166"],
            contact={"department": "相談窓口", "email": "desk@example.org"}, webhook_url="http://127.0.0.1:9/unused"),
            partner_id=uuid7(), cipher=CIPHER, now=MORNING, url_rules=WebhookUrlRules(allow_loopback=True))


async def handled(pool, handler, envelope: Envelope) -> None:
    """As its consumer runs it: in a transaction of its own."""
    async with pool.acquire() as conn, conn.transaction():
        await consumed(handler)(conn, envelope)


async def a_consent(pool, case_id: UUID, partner: dict) -> None:
    await handled(pool, on_consent_granted, Envelope(data=ConsentGranted(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(), person_ref=uuid7(),
        recipient={"kind": "partner", "partner_id": partner["partner_id"]}, purpose="referral", method="written"),
        id=uuid7(), source="/tsunagu/intake"))


async def a_referral(pool, partner: dict, *, need: str = "no_food", consented: bool = True) -> tuple[UUID, UUID]:
    """A case referred to the partner (with the person's consent unless not `consented`): (case, referral)."""
    case_id, referral_id = uuid7(), uuid7()
    if consented:
        await a_consent(pool, case_id, partner)
    example = ReferralRequested.model_json_schema()["examples"][0]
    await handled(pool, on_referral_requested, Envelope(data=ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(referral_id), "need": need,
        "occurred_at": MORNING.isoformat(), "accept_by": ACCEPT_BY.isoformat(),
        "recipient": {"kind": "partner", "partner_id": partner["partner_id"]}}), id=uuid7(), source="/tsunagu/referral"))
    return case_id, referral_id


def as_partner(partner: dict) -> dict:
    return {"Authorization": f"Bearer {partner['api_token']}"}


def as_staff(role: str) -> dict:
    return {"Authorization": f"Bearer {bearer_token(role)}"}


async def inbox(api, partner: dict, headers: dict | None = None, **params) -> httpx.Response:
    return await api.get(f"/v1/partners/{partner['partner_id']}/referrals", params=params,
                         headers=as_partner(partner) if headers is None else headers)


async def test_a_partner_sees_its_referrals_newest_first_with_their_deadline_and_status(pool, api):
    food_bank = await a_partner(pool)
    first_case, first = await a_referral(pool, food_bank)
    second_case, second = await a_referral(pool, food_bank, need="housing")

    response = await inbox(api, food_bank)

    assert response.status_code == 200, response.text
    listed = [AddressedReferral.model_validate(r) for r in response.json()]
    assert [(r.referral_id, r.case_id, r.need.value) for r in listed] == [
        (second, second_case, "housing"), (first, first_case, "no_food")]
    assert all(r.accept_by == ACCEPT_BY and r.status == "requested" and r.status_ja == "依頼中"
               and r.last_response is None for r in listed)


async def test_the_partners_answer_shows_as_its_last_answer_and_moves_the_status(pool, api):
    food_bank = await a_partner(pool)
    _, referral_id = await a_referral(pool, food_bank)

    answered = await api.post(f"/v1/partners/{food_bank['partner_id']}/referrals/{referral_id}/responses",
                              json={"response": "accepted"}, headers=as_partner(food_bank))
    assert answered.status_code == 201, answered.text

    [listed] = (await inbox(api, food_bank)).json()
    assert (listed["last_response"], listed["status"], listed["status_ja"]) == ("accepted", "accepted", "受理")
    assert listed["last_response_at"] is not None


async def test_the_inbox_carries_ids_codes_and_times_and_nothing_about_the_person(pool, api):
    food_bank = await a_partner(pool)
    await a_referral(pool, food_bank)

    [listed] = (await inbox(api, food_bank)).json()

    assert set(listed) == {"referral_id", "case_id", "municipality_code", "need", "accept_by", "last_response",
                           "last_response_at", "status", "status_ja", "updated_at"}


async def test_a_referral_held_for_a_consent_the_partner_never_had_is_not_listed(pool, api):
    food_bank = await a_partner(pool)
    await a_referral(pool, food_bank, consented=False)

    response = await inbox(api, food_bank)

    assert response.status_code == 200 and response.json() == []


async def test_a_partner_never_sees_another_partners_referrals(pool, api):
    food_bank, housing = await a_partner(pool), await a_partner(pool, "居住支援法人 すまいる")
    await a_referral(pool, food_bank)

    assert (await inbox(api, housing)).json() == []
    refused = await inbox(api, food_bank, headers=as_partner(housing))
    assert refused.status_code == 403
    assert refused.json()["message_ja"] == "他の団体の情報は見られません。"


async def test_coordinators_and_operations_read_a_partners_inbox_and_other_staff_and_strangers_do_not(pool, api):
    food_bank = await a_partner(pool)
    await a_referral(pool, food_bank)

    assert len((await inbox(api, food_bank, as_staff("coordinator"))).json()) == 1
    assert len((await inbox(api, food_bank, as_staff("ops"))).json()) == 1
    assert (await inbox(api, food_bank, as_staff("counter"))).status_code == 403
    assert (await inbox(api, food_bank, {})).status_code == 401
    assert (await inbox(api, food_bank, {"Authorization": "Bearer tzp_not-a-token"})).status_code == 401


async def test_the_inbox_is_read_a_page_at_a_time(pool, api):
    food_bank = await a_partner(pool)
    referrals = [(await a_referral(pool, food_bank))[1] for _ in range(3)]

    first_page = (await inbox(api, food_bank, limit=2)).json()
    next_page = (await inbox(api, food_bank, limit=2, before=first_page[-1]["referral_id"])).json()

    assert [UUID(r["referral_id"]) for r in first_page + next_page] == referrals[::-1]
    assert (await inbox(api, food_bank, limit=201)).status_code == 422


class Explained:
    """A connection that answers a read with the plan PostgreSQL would run it by, not its rows."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def fetch(self, sql: str, *args) -> list[dict]:
        return json.loads(await self.conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))


def indexes_in(plan: dict) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    return found.union(*(indexes_in(p) for p in plan.get("Plans", [])))


async def test_the_inbox_finds_a_partners_referrals_their_request_and_last_answer_by_index(pool, api):
    food_bank = await a_partner(pool)
    _, referral_id = await a_referral(pool, food_bank)
    await api.post(f"/v1/partners/{food_bank['partner_id']}/referrals/{referral_id}/responses",
                   json={"response": "accepted"}, headers=as_partner(food_bank))

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a few rows would be scanned whatever the indexes
        [explained] = await Referrals(Explained(conn)).addressed_to(UUID(food_bank["partner_id"]), None, 50)

    assert {"partner_referrals_by_partner", "deliveries_by_case", "responses_by_referral"} <= indexes_in(
        explained["Plan"])
