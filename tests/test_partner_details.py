"""Detail fetches wait for intake without holding the database the consumers share.

partner-notification runs as a real process with a small connection pool; intake is a stand-in on
loopback that keeps each request until the test lets it answer. Everything is asserted by the
order things happened in, never by how long they took.
"""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tsunagu_contracts import (
    INTAKE_CASES, REFERRALS, ConsentGranted, ConsentWithdrawn, Event, ReferralRequested, encode, uuid7,
)
from tsunagu_teststack.receivers import ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

POOL_SIZE = 4
"""The service's whole pool; its outbox relay and webhook sender each keep one connection."""


class SlowIntake(ReceiverServer):
    """intake's internal person API, answering only once `answer` is set."""

    def __init__(self):
        super().__init__()
        self.waiting: list[str] = []
        self.answer = asyncio.Event()
        self.person_ref = uuid7()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def app(self, scope, receive, send) -> None:
        self.waiting.append(scope["path"])
        await self.answer.wait()
        body = json.dumps({"person_ref": str(self.person_ref), "name": "座間 花子", "name_kana": "ざま はなこ",
                           "phone": "046-000-0000", "address": None, "summary": None}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Partners:
    def __init__(self, service, database: asyncpg.Connection, producer: AIOKafkaProducer, namespace: str,
                 auth_headers):
        self.service, self.db, self.producer, self.namespace, self.auth = (service, database, producer, namespace,
                                                                           auth_headers)

    async def publish(self, topic, event: Event) -> None:
        record = encode(event)
        await self.producer.send_and_wait(self.namespace + topic.name, record.value, key=record.key,
                                          headers=record.headers)

    async def a_partner(self) -> dict:
        async with httpx.AsyncClient(base_url=self.service.url, timeout=30) as client:
            response = await client.post("/v1/partners", headers=self.auth("coordinator"), json={
                "name": "ざまフードバンク", "need_categories": ["no_food"], "areas": ["142166"],
                "contact": {"department": "相談窓口", "email": "desk@example.org"},
                "webhook_url": "http://127.0.0.1:9/unused"})
        assert response.status_code == 201, response.text
        return response.json()

    async def consent(self, partner: dict, case_id: UUID | None = None) -> ConsentGranted:
        granted = ConsentGranted(
            case_id=case_id or uuid7(), municipality_code="142166",
            occurred_at=ReferralRequested.model_validate(example(ReferralRequested)).occurred_at,
            consent_id=uuid7(), person_ref=uuid7(), recipient={"kind": "partner", "partner_id": partner["partner_id"]},
            purpose="referral", method="written")
        await self.publish(INTAKE_CASES, granted)
        await eventually(lambda: self.db.fetchval("SELECT count(*) FROM permissions WHERE grant_id = $1",
                                                  granted.consent_id), until=lambda n: n == 1)
        return granted

    async def referral(self, partner: dict, case_id: UUID) -> UUID:
        requested = ReferralRequested.model_validate({
            **example(ReferralRequested), "case_id": str(case_id), "referral_id": str(uuid7()), "need": "no_food",
            "recipient": {"kind": "partner", "partner_id": partner["partner_id"]}})
        await self.publish(REFERRALS, requested)
        await eventually(lambda: self.db.fetchval("SELECT count(*) FROM partner_referrals WHERE referral_id = $1",
                                                  requested.referral_id), until=lambda n: n == 1)
        return requested.referral_id

    async def fetch(self, partner: dict, referral_id: UUID) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.service.url, timeout=120) as client:
            return await client.get(f"/v1/partners/{partner['partner_id']}/referrals/{referral_id}",
                                    headers={"Authorization": f"Bearer {partner['api_token']}"})


def example(event_type) -> dict:
    return event_type.model_json_schema()["examples"][0]


@pytest.fixture
async def intake():
    async with SlowIntake() as server:
        try:
            yield server
        finally:
            server.answer.set()


@pytest.fixture
async def partners(service_process, infrastructure, kafka_namespace, auth_headers, intake):
    service = await service_process("partner-notification", extra_env={
        "TSUNAGU_DATABASE_POOL_SIZE": str(POOL_SIZE), "TSUNAGU_PARTNERS_INTAKE_URL": intake.url,
        # Intake answers when the test says, not before the service would give up on it.
        "TSUNAGU_PARTNERS_INTAKE_TIMEOUT_S": "600"})
    database = await asyncpg.connect(service.database_url)
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        yield Partners(service, database, producer, kafka_namespace, auth_headers)
    finally:
        await producer.stop()
        await database.close()


async def test_fetches_waiting_for_intake_leave_the_pool_to_the_consumers(partners, intake):
    partner = await partners.a_partner()
    granted = await partners.consent(partner)
    referral_id = await partners.referral(partner, granted.case_id)
    happened: list[str] = []

    fetches = [asyncio.create_task(partners.fetch(partner, referral_id)) for _ in range(POOL_SIZE + 2)]
    await eventually(lambda: asyncio.sleep(0, len(intake.waiting)), until=lambda n: n == len(fetches))
    happened.append("more fetches wait for intake than the pool has connections")
    await partners.consent(partner)  # another case's consent, through the consumer
    if not any(f.done() for f in fetches):
        happened.append("a consumer recorded a consent meanwhile")
    intake.answer.set()
    answers = await asyncio.gather(*fetches)
    happened.append("intake answered")

    assert happened == ["more fetches wait for intake than the pool has connections",
                        "a consumer recorded a consent meanwhile", "intake answered"]
    assert [a.status_code for a in answers] == [200] * len(fetches), answers[0].text
    assert await partners.db.fetchval("SELECT count(*) FROM provisions") == len(fetches)


async def test_a_consent_withdrawn_while_intake_answers_refuses_the_fetch_and_records_nothing(partners, intake):
    partner = await partners.a_partner()
    granted = await partners.consent(partner)
    referral_id = await partners.referral(partner, granted.case_id)

    fetch = asyncio.create_task(partners.fetch(partner, referral_id))
    await eventually(lambda: asyncio.sleep(0, len(intake.waiting)), until=lambda n: n == 1)
    await partners.publish(INTAKE_CASES, ConsentWithdrawn(
        case_id=granted.case_id, municipality_code="142166", occurred_at=granted.occurred_at,
        consent_id=granted.consent_id, person_ref=granted.person_ref, recipient=granted.recipient,
        purpose=granted.purpose))
    await eventually(lambda: partners.db.fetchval("SELECT revoked_at FROM permissions WHERE grant_id = $1",
                                                  granted.consent_id), until=lambda at: at is not None)
    intake.answer.set()
    answer = await fetch

    assert answer.status_code == 403, answer.text
    assert "同意" in answer.json()["message_ja"] and "nothing is provided" in answer.json()["message_en"]
    assert await partners.db.fetchval("SELECT count(*) FROM provisions") == 0
