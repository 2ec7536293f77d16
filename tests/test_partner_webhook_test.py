"""A partner's developer tests its webhook: a signed test event is sent at once, and the answer says
how the endpoint answered, without the secret, without a delivery, at most once every 5 s.

partner-notification runs as a real process (two of them on one database for the rate limit);
the endpoints are real HTTP receivers on loopback, one answering 500 and one not listening. A host
name that resolves to an intranet address comes from the service's own hosts table
(TSUNAGU_PARTNERS_STATIC_HOSTS), the seam in front of DNS.
"""

import asyncio
import json
import socket

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tsunagu_teststack.receivers import Receiver, ReceiverServer

pytestmark = pytest.mark.stack
TEST_EVENT = "tsunagu.partners.webhook-test.v1"
INTRANET_HOST = "intranet.partner.example"


class Partners:
    def __init__(self, service, auth_headers):
        self.service, self.auth = service, auth_headers

    async def call(self, method: str, path: str, *, token: str | None = None, service=None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.auth("coordinator")
        async with httpx.AsyncClient(base_url=(service or self.service).url, timeout=60) as client:
            return await client.request(method, path, headers=headers, **kw)

    async def registered(self, name: str, webhook_url: str | None = None, **fields) -> dict:
        body = {"name": name, "need_categories": ["no_food"], "areas": ["142166"],
                "contact": {"department": "相談窓口", "email": "desk@example.org"}, **fields}
        if webhook_url:
            body["webhook_url"] = webhook_url
        response = await self.call("POST", "/v1/partners", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def test_webhook(self, partner: dict, *, token: str | None = None, service=None) -> httpx.Response:
        return await self.call("POST", f"/v1/partners/{partner['partner_id']}/webhook/test",
                               token=token, service=service)

    async def deliveries(self, partner: dict) -> list[dict]:
        response = await self.call("GET", f"/v1/partners/{partner['partner_id']}/deliveries")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def partners(service_process, auth_headers):
    service = await service_process("partner-notification", extra_env={
        "TSUNAGU_PARTNERS_STATIC_HOSTS": json.dumps({INTRANET_HOST: ["10.20.30.40"]})})
    return Partners(service, auth_headers)


def a_port_nobody_listens_on() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_partner_tests_its_webhook_and_sees_its_signed_test_event_accepted_with_the_answers_text(partners):
    async with ReceiverServer() as server:
        receiver = Receiver(answers=[200], body="受け付けました ok".encode(), content_type="text/plain; charset=utf-8")
        food_bank = await partners.registered("ざまフードバンク", server.add("hook", receiver))

        answer = await partners.test_webhook(food_bank, token=food_bank["api_token"])

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["delivered"] is True and result["status_code"] == 200 and result["error"] is None
    assert result["answer_excerpt"] == "受け付けました ok" and result["answer_truncated"] is False
    assert result["duration_ms"] >= 0 and result["event_type"] == TEST_EVENT and result["signatures"] == 1
    assert result["message_ja"].startswith("テスト通知は受け付けられました")
    [request] = receiver.received
    event = Webhook(food_bank["webhook_secret"]).verify(request.body, request.headers)  # as a partner verifies
    assert event["type"] == TEST_EVENT and event["data"]["partner_id"] == food_bank["partner_id"]
    assert request.headers["webhook-id"] == result["webhook_id"] == event["id"]
    assert "case" not in json.dumps(event["data"]) and event["subject"] == food_bank["partner_id"]
    assert await partners.deliveries(food_bank) == [], "a test is not a delivery"


async def test_a_receiver_answering_500_or_not_listening_is_reported_and_the_secret_never_shown(partners):
    async with ReceiverServer() as server:
        failing = Receiver(answers=[500], content_type="application/json")
        broken = await partners.registered("こども食堂", server.add("failing", failing))
        failing.body = json.dumps({"error": "bad signature", "secret_in_use": broken["webhook_secret"],
                                   "padding": "x" * 2000}).encode()
        down = await partners.registered("ざま食品庫", f"http://127.0.0.1:{a_port_nobody_listens_on()}/hook")

        answered_500 = await partners.test_webhook(broken)  # a coordinator may test too
        not_listening = await partners.test_webhook(down, token=down["api_token"])

    assert answered_500.status_code == 200, answered_500.text
    result = answered_500.json()
    assert result["delivered"] is False and result["status_code"] == 500 and result["error"] is None
    assert result["answer_excerpt"].startswith('{"error": "bad signature"') and result["answer_truncated"] is True
    assert len(result["answer_excerpt"].encode()) <= 1024 + 8
    secret = broken["webhook_secret"]
    assert secret not in answered_500.text and secret.removeprefix("whsec_") not in answered_500.text
    assert "[secret]" in result["answer_excerpt"]
    assert len(failing.received) == 1, "a test is sent once, never retried"
    assert await partners.deliveries(broken) == []

    assert not_listening.status_code == 200, not_listening.text
    result = not_listening.json()
    assert (result["delivered"], result["status_code"], result["error"]) == (False, None, "ConnectError")
    assert result["answer_excerpt"] is None and result["message_ja"].startswith("接続できませんでした")


async def test_two_tests_at_once_on_two_instances_send_one_and_refuse_the_other_for_five_seconds(
        partners, service_process):
    second = await service_process("partner-notification", database_url=partners.service.database_url,
                                   migrate=False)
    async with ReceiverServer() as server:
        receiver = Receiver()
        food_bank = await partners.registered("ざまフードバンク", server.add("hook", receiver))

        answers = await asyncio.gather(partners.test_webhook(food_bank), partners.test_webhook(food_bank,
                                                                                               service=second))

    assert sorted(a.status_code for a in answers) == [200, 429], [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code == 429]
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert list(refused.json())[:2] == ["message_ja", "message_en"]
    assert len(receiver.received) == 1, "the refused test sent nothing"


async def test_no_test_is_sent_without_a_webhook_to_a_deactivated_partner_for_another_partner_or_to_an_intranet(
        partners):
    async with ReceiverServer() as server:
        receiver = Receiver()
        kafka_only = await partners.registered("ざまフードバンク", kafka_topic=True)
        leaving = await partners.registered("こども食堂", server.add("leaving", receiver))
        other = await partners.registered("ざま食品庫", server.add("other", receiver))
        intranet = await partners.registered("社内サーバー", f"https://{INTRANET_HOST}/hook")
        deactivated = await partners.call("POST", f"/v1/partners/{leaving['partner_id']}/deactivate")
        assert deactivated.status_code == 200, deactivated.text

        without_webhook = await partners.test_webhook(kafka_only)
        of_a_deactivated = await partners.test_webhook(leaving)
        by_another_partner = await partners.test_webhook(other, token=leaving["api_token"])
        by_the_wrong_partner = await partners.test_webhook(other, token=intranet["api_token"])
        to_the_intranet = await partners.test_webhook(intranet)

    assert without_webhook.status_code == 409 and without_webhook.json()["message_ja"].startswith("この団体には Webhook")
    assert of_a_deactivated.status_code == 409 and "利用停止" in of_a_deactivated.json()["message_ja"]
    assert by_another_partner.status_code == 401, "a deactivated partner's token no longer works"
    assert by_the_wrong_partner.status_code == 403
    assert receiver.received == []
    assert to_the_intranet.status_code == 200, to_the_intranet.text
    result = to_the_intranet.json()
    assert (result["delivered"], result["status_code"], result["error"]) == (False, None, "url_refused:private")
    assert result["message_ja"].startswith("送信しませんでした")
    assert INTRANET_HOST not in to_the_intranet.text, "the reason, never the URL"
