"""After real traffic, each service's /metrics answers what an operator asks first: which routes
are used and how fast, how far behind each consumer is, whether anything waits in an outbox or the
dead letters, how webhooks fare, and what is overdue.

The four services run as real processes on the real broker and database; partners are real HTTP
receivers on loopback.
"""

import asyncio

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tsunagu_contracts import INTAKE_CASES, dead_letter_topic
from tsunagu_servicehost.status import Figures
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack


async def scrape(service) -> Figures:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        return Figures.parse((await client.get("/metrics")).text)


async def call(service, method: str, path: str, headers: dict, status: int = 200, **kw) -> dict:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        response = await client.request(method, path, headers=headers, **kw)
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def execute(database_url: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def stack(service_process):
    intake = await service_process("intake")
    fast = {"TSUNAGU_PARTNERS_RETRY_SCHEDULE_S": "[0.2]", "TSUNAGU_PARTNERS_TIMEOUT_S": "5",
            "TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}
    referral, housing, partners = await asyncio.gather(
        service_process("referral"), service_process("housing-support"),
        service_process("partner-notification", extra_env=fast))
    return intake, referral, housing, partners


async def test_metrics_after_real_traffic_answer_what_an_operator_asks(stack, auth_headers, kafka_namespace,
                                                                      infrastructure):
    intake, referral, housing, partners = stack
    coordinator = auth_headers("coordinator")
    async with ReceiverServer() as server:
        registered = {name: await call(partners, "POST", "/v1/partners", coordinator, 201, json={
            "name": name, "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": server.add(name, r)})
            for name, r in {"answers": Receiver(), "gone": Receiver(answers=[410])}.items()}
        case = await call(intake, "POST", "/v1/consultations", auth_headers("counter"), 201, json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": ["no_food", "housing"],
            "primary_need": "no_food", "consents": [
                {"recipient": {"kind": "partner", "partner_id": p["partner_id"]}, "purpose": "referral",
                 "method": "written"} for p in registered.values()]})
        case_id = case["case_id"]

        await eventually(lambda: scrape(partners), until=lambda f: f.total(
            "tsunagu_webhook_deliveries_total", outcome="delivered") >= 1 and f.total(
            "tsunagu_webhook_deliveries_total", outcome="gone") >= 1)

    await eventually(lambda: call(referral, "GET", f"/v1/cases/{case_id}/referrals", coordinator),
                     until=lambda sheet: len(sheet["referrals"]) >= 2)
    await eventually(lambda: call(housing, "GET", "/v1/supports", coordinator),
                     until=lambda page: any(s["case_id"] == case_id for s in page["items"]))
    # A record nobody can decode, on a topic referral reads: it goes to referral's dead letters.
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, b"\x00not json", key=b"poison")
    finally:
        await producer.stop()
    # Time passes for one referral: its deadline is an hour ago.
    await execute(referral.database_url, "UPDATE referrals SET accept_by = now() - interval '1 hour' "
                                         "WHERE status = 'requested'")

    dlq = kafka_namespace + dead_letter_topic("referral").name
    group = kafka_namespace + "tsunagu-referral"
    cases_topic = kafka_namespace + INTAKE_CASES.name
    at_referral = await eventually(lambda: scrape(referral), until=lambda f: f.total(
        "tsunagu_dead_letters", topic=dlq) == 1 and f.matching("tsunagu_consumer_lag_records", group=group,
                                                              topic=cases_topic))
    at_referral = await eventually(lambda: scrape(referral), until=lambda f: f.total(
        "tsunagu_consumer_lag_records", group=group) == 0)
    at_intake, at_housing, webhooks = await scrape(intake), await scrape(housing), await scrape(partners)
    async with httpx.AsyncClient(base_url=referral.url) as client:
        referral_text = (await client.get("/metrics")).text

    assert at_intake.total("tsunagu_http_requests_total", method="POST", route="/v1/consultations",
                           status="201") == 1
    assert at_intake.total("tsunagu_http_request_duration_seconds_count", route="/v1/consultations") == 1
    assert at_intake.total("tsunagu_outbox_published_total") >= 1
    assert at_intake.matching("tsunagu_outbox_backlog") == [0.0]
    assert at_referral.total("tsunagu_http_requests_total", route="/v1/cases/{case_id}/referrals") >= 1
    assert case_id not in referral_text, "labels carry route templates, never ids"
    assert len(at_referral.matching("tsunagu_consumer_lag_records", group=group, topic=cases_topic)) == \
        INTAKE_CASES.partitions, "one series per partition"
    assert at_referral.total("tsunagu_consumed_events_total", outcome="dead_lettered") == 1
    assert at_referral.largest("tsunagu_referrals_overdue") >= 1
    assert at_referral.matching("tsunagu_readiness_check_ok", check="database") == [1.0]
    assert webhooks.total("tsunagu_webhook_delivery_duration_seconds_count") >= 2
    assert webhooks.largest("tsunagu_partners_webhooks_disabled") == 1, "the endpoint that answered 410"
    assert webhooks.matching("tsunagu_partners_held_events_oldest_age_seconds") == [0.0]
    assert at_housing.total("tsunagu_http_requests_total", route="/v1/supports", method="GET") >= 1
    assert at_housing.matching("tsunagu_housing_tasks_overdue") == [0.0]
    assert at_housing.matching("tsunagu_housing_check_ins_late_unreported") == [0.0]
    assert "tsunagu_housing_check_ins_to_follow_up" in at_housing.names
