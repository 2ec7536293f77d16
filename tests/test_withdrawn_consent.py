"""Withdrawn consent reaches the referral: the person withdraws the consent a partner's referral
rests on, referral withdraws it (`consent_withdrawn`), the coordinator sees it first in the queue,
and a division takes the need; a 支援会議 basis that covers the partner keeps the referral until
the basis itself is ended. A redelivered withdrawal changes nothing more.

intake and referral run as real processes on the real broker and PostgreSQL; the partner is only
a routing table entry (partner-notification is not needed for referral's side of the loop).
"""

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tsunagu_contracts import INTAKE_CASES, ConsentWithdrawn, uuid7
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
FOOD_BANK = str(uuid7())
PARTNER = {"kind": "partner", "partner_id": FOOD_BANK}
LIVING_SUPPORT = {"kind": "division", "division": "living_support"}


class Loop:
    def __init__(self, intake, referral, auth):
        self.intake, self.referral, self.auth = intake, referral, auth

    async def call(self, service, method: str, path: str, role: str = "coordinator", **kw) -> httpx.Response:
        async with httpx.AsyncClient(base_url=service.url, timeout=20) as client:
            return await client.request(method, path, headers=self.auth(role), **kw)

    async def referred_to_the_partner(self, purpose: str = "referral") -> tuple[str, str]:
        """A consultation whose need (no food) goes to the partner under a consent: (case id, consent id)."""
        created = await self.call(self.intake, "POST", "/v1/consultations", "counter", json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "tax", "channel": "counter", "urgency": "high", "needs": ["no_food"],
            "primary_need": "no_food",
            "consents": [{"recipient": PARTNER, "purpose": purpose, "method": "written"}]})
        assert created.status_code == 201, created.text
        case_id = created.json()["case_id"]
        await eventually(lambda: self.referrals(case_id), until=lambda r: len(r) == 1)
        return case_id, created.json()["consent_ids"][0]

    async def referrals(self, case_id: str) -> list[dict]:
        response = await self.call(self.referral, "GET", f"/v1/cases/{case_id}/referrals")
        return response.json()["referrals"] if response.status_code == 200 else []


@pytest.fixture
async def loop(service_process, auth_headers):
    intake, referral = await asyncio.gather(service_process("intake"), service_process("referral"))
    loop = Loop(intake, referral, auth_headers)
    routed = await loop.call(referral, "PUT", "/v1/routing/no_food", json={"candidates": [
        PARTNER, {"kind": "partner", "partner_id": str(uuid7())}, LIVING_SUPPORT]})
    assert routed.status_code == 200, routed.text
    return loop


def shape(referrals: list[dict]) -> list[tuple[dict, str]]:
    return [(r["recipient"], r["status"]) for r in referrals]


async def test_a_withdrawn_consent_withdraws_the_partners_referral_the_coordinator_sees_it_and_a_division_takes_it(
        loop, infrastructure, kafka_namespace):
    case_id, consent_id = await loop.referred_to_the_partner()

    withdrawn = await loop.call(loop.intake, "POST", f"/v1/consents/{consent_id}/withdrawal", "counter")
    assert withdrawn.status_code == 204, withdrawn.text
    referrals = await eventually(lambda: loop.referrals(case_id), until=lambda r: len(r) == 2)

    assert shape(referrals) == [(PARTNER, "withdrawn"), (LIVING_SUPPORT, "requested")], \
        "the second partner would need a consent of its own: the division is asked"
    assert referrals[0]["status_label_ja"] == "取り下げ（同意の撤回・共有の根拠の終了）"
    queue = (await loop.call(loop.referral, "GET", "/v1/referrals", params={"limit": 500})).json()
    assert queue[0]["status"] in {"withdrawn", "unreachable"}, "withdrawn referrals lead the coordinator's queue"
    listed = (await loop.call(loop.referral, "GET", "/v1/referrals", params={"status": "withdrawn"})).json()
    assert referrals[0]["referral_id"] in {r["referral_id"] for r in listed}
    assert await rerouted_reasons(loop.referral, case_id) == ["consent_withdrawn"]
    at_the_counter = await eventually(
        lambda: loop.call(loop.intake, "GET", f"/v1/cases/{case_id}", "counter"),
        until=lambda r: [x["status"] for x in r.json()["referrals"]] == ["withdrawn", "requested"])
    assert at_the_counter.json()["consents"][0]["withdrawn_at"], "the counter sees why, beside the consent"

    # The same withdrawal delivered again (same event id) is applied once.
    await redeliver(infrastructure, kafka_namespace, loop.intake, ConsentWithdrawn.type)
    # A later event of the same case, on the same partition, is applied after the redelivered one.
    added = await loop.call(loop.intake, "POST", f"/v1/cases/{case_id}/needs", "counter",
                            json={"need": "debt", "identified_by": "tax"})
    assert added.status_code == 204, added.text
    after = await eventually(lambda: loop.referrals(case_id), until=lambda r: len(r) == 3)
    assert shape(after)[:2] == shape(referrals)
    assert await rerouted_reasons(loop.referral, case_id) == ["consent_withdrawn"]


async def test_a_statutory_basis_keeps_the_referral_with_the_partner_until_the_basis_is_ended(loop):
    case_id, consent_id = await loop.referred_to_the_partner()
    basis = await loop.call(loop.intake, "POST", f"/v1/cases/{case_id}/statutory-bases", json={
        "basis": "support_conference_sra_9", "held_on": datetime.now(UTC).date().isoformat(),
        "valid_until": "2099-03-31", "members": [PARTNER], "purposes": ["referral"]})
    assert basis.status_code == 201, basis.text

    await loop.call(loop.intake, "POST", f"/v1/consents/{consent_id}/withdrawal", "counter")
    # A later event of the case shows referral has applied the withdrawal before it.
    await loop.call(loop.intake, "POST", f"/v1/cases/{case_id}/needs", "counter",
                    json={"need": "debt", "identified_by": "tax"})
    kept = await eventually(lambda: loop.referrals(case_id), until=lambda r: len(r) == 2)
    assert kept[0]["recipient"] == PARTNER and kept[0]["status"] == "requested", "the 支援会議 covers the partner"

    ended = await loop.call(loop.intake, "POST", f"/v1/cases/{case_id}/statutory-bases/{basis.json()['basis_id']}/end")
    assert ended.status_code == 200, ended.text
    food = await eventually(lambda: loop.referrals(case_id),
                            until=lambda r: [x["status"] for x in r if x["need"] == "no_food"] == ["withdrawn",
                                                                                                   "requested"])
    assert [x["recipient"] for x in food if x["need"] == "no_food"] == [PARTNER, LIVING_SUPPORT]
    assert await rerouted_reasons(loop.referral, case_id) == ["statutory_basis_ended"]


async def rerouted_reasons(referral, case_id: str) -> list[str]:
    conn = await asyncpg.connect(referral.database_url)
    try:
        rows = await conn.fetch("SELECT value FROM outbox WHERE headers->>'ce_type' = 'tsunagu.referral.rerouted.v1' "
                                "AND record_key = $1 ORDER BY id", case_id)
    finally:
        await conn.close()
    return [json.loads(bytes(r["value"]))["reason"] for r in rows]


async def redeliver(infrastructure, namespace: str, intake, event_type: str) -> None:
    """Send intake's published record of `event_type` to its topic once more, as Kafka may."""
    conn = await asyncpg.connect(intake.database_url)
    try:
        row = await conn.fetchrow("SELECT record_key, headers, value FROM outbox WHERE headers->>'ce_type' = $1",
                                  event_type)
    finally:
        await conn.close()
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        headers = [(k, v.encode()) for k, v in json.loads(row["headers"]).items()]
        await producer.send_and_wait(namespace + INTAKE_CASES.name, bytes(row["value"]),
                                     key=row["record_key"].encode(), headers=headers)
    finally:
        await producer.stop()


async def test_a_withdrawal_and_the_partners_acceptance_at_once_leave_the_need_with_the_division_once(
        migrated_database):
    from tsunagu_contracts import ConsentGranted, ConsultationRegistered, Recipient
    from tsunagu_contracts.codes import NeedCategory
    from tsunagu_referral.adapters.repository import unit_of_work
    from tsunagu_referral.domain.model import Detail, Policy
    from tsunagu_referral.domain.referral import Action
    from tsunagu_referral.handlers import consent, referrals
    from tsunagu_referral.handlers.reports import project_appended
    from tsunagu_servicehost.errors import Rejected

    def example(kind, **fields):
        return kind.model_validate({**kind.model_json_schema()["examples"][0], **fields})

    policy, now = Policy(), datetime.now(UTC)
    partner = Recipient.model_validate(PARTNER)
    async with asyncpg.create_pool(await migrated_database("referral"), min_size=2, max_size=10) as pool:
        async with unit_of_work(pool, on_append=project_appended) as uow:
            await uow.repo.set_routes(NeedCategory.NO_FOOD, [partner, Recipient.model_validate(LIVING_SUPPORT)])

        async def work(step):
            try:
                async with unit_of_work(pool, on_append=project_appended) as uow:
                    return await step(uow)
            except Rejected as rejected:
                return rejected

        for _ in range(5):
            case_id = uuid7()
            given = example(ConsentGranted, case_id=str(case_id), recipient=PARTNER, purpose="referral",
                            occurred_at=now.isoformat())
            await work(lambda uow: referrals.on_consultation_registered(uow, example(
                ConsultationRegistered, case_id=str(case_id), needs=["no_food"], primary_need="no_food",
                occurred_at=now.isoformat()), policy=policy))
            await work(lambda uow: consent.on_consent_granted(uow, given, policy=policy))
            async with pool.acquire() as conn:
                referral_id = await conn.fetchval("SELECT referral_id FROM referrals WHERE case_id = $1", case_id)

            await asyncio.gather(
                work(lambda uow: referrals.act(uow, referral_id, Action.ACCEPT, Detail(), now=now, policy=policy,
                                               recipient_must_be=partner)),
                work(lambda uow: consent.on_consent_withdrawn(uow, example(
                    ConsentWithdrawn, case_id=str(case_id), consent_id=str(given.consent_id), recipient=PARTNER,
                    purpose="referral", occurred_at=now.isoformat()), policy=policy)))

            async with pool.acquire() as conn:
                statuses = await conn.fetch("SELECT recipient->>'kind' AS kind, status FROM referrals "
                                            "WHERE case_id = $1 ORDER BY requested_at", case_id)
                rerouted = await conn.fetchval("SELECT count(*) FROM outbox WHERE record_key = $1 AND "
                                               "headers->>'ce_type' = 'tsunagu.referral.rerouted.v1'", str(case_id))
                follow_ups = await conn.fetchval("SELECT count(*) FROM follow_ups WHERE case_id = $1", case_id)
            assert [(r["kind"], r["status"]) for r in statuses] == [("partner", "withdrawn"), ("division", "requested")]
            assert rerouted == 1 and follow_ups == 0, "accepted or not, the partner's referral is withdrawn once"
