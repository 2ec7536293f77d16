"""A partner's credentials and webhook across the real stack: rotation with both signatures during
the overlap (checked with the `standardwebhooks` package, as a partner would), deactivation, and the
rules on where a webhook may go, at registration and at send time.

intake, referral and partner-notification run as real processes; partners are real HTTP receivers
on loopback. A host name that resolves to a forbidden address comes from the service's own hosts
table (TSUNAGU_PARTNERS_STATIC_HOSTS), the seam in front of DNS.
"""

import asyncio
import json

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED, REGISTERED = "tsunagu.referral.requested.v1", "tsunagu.intake.consultation-registered.v1"
METADATA_HOST = "metadata.partner.example"


class Stack:
    def __init__(self, intake, referral, partners, auth_headers):
        self.intake, self.referral, self.partners, self.auth = intake, referral, partners, auth_headers

    async def call(self, service, method: str, path: str, *, token: str | None = None, role: str = "coordinator",
                   **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.auth(role)
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            return await client.request(method, path, headers=headers, **kw)

    async def register(self, name: str, url: str) -> httpx.Response:
        return await self.call(self.partners, "POST", "/v1/partners", json={
            "name": name, "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": url})

    async def registered(self, name: str, url: str) -> dict:
        response = await self.register(name, url)
        assert response.status_code == 201, response.text
        return response.json()

    async def route_no_food_to(self, partner: dict) -> None:
        response = await self.call(self.referral, "PUT", "/v1/routing/no_food", json={
            "candidates": [{"kind": "partner", "partner_id": partner["partner_id"]}]})
        assert response.status_code == 200, response.text

    async def consult(self, *partners: dict) -> dict:
        response = await self.call(self.intake, "POST", "/v1/consultations", role="counter", json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": ["no_food"],
            "primary_need": "no_food", "consents": [
                {"recipient": {"kind": "partner", "partner_id": p["partner_id"]}, "purpose": "referral",
                 "method": "written"} for p in partners]})
        assert response.status_code == 201, response.text
        return response.json()

    async def deliveries(self, partner: dict) -> list[dict]:
        response = await self.call(self.partners, "GET", f"/v1/partners/{partner['partner_id']}/deliveries")
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, partner: dict, action: str, **kw) -> httpx.Response:
        return await self.call(self.partners, "POST", f"/v1/partners/{partner['partner_id']}/{action}", **kw)


async def a_stack(service_process, auth_headers, **partner_settings: str) -> Stack:
    settings = {"TSUNAGU_PARTNERS_RETRY_SCHEDULE_S": "[0.2, 0.2]", "TSUNAGU_PARTNERS_TIMEOUT_S": "5",
                "TSUNAGU_PARTNERS_STATIC_HOSTS": json.dumps({METADATA_HOST: ["169.254.169.254"],
                                                             "intranet.partner.example": ["10.20.30.40"]}),
                **partner_settings}
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification",
                        extra_env=settings | {"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    return Stack(intake, referral, partners, auth_headers)


@pytest.fixture
async def stack(service_process, auth_headers):
    return await a_stack(service_process, auth_headers)


def arrived(receiver: Receiver, event_type: str):
    return lambda: asyncio.sleep(0, receiver.of_type(event_type))


async def test_during_the_overlap_webhooks_verify_with_both_secrets_and_both_tokens_work(stack):
    async with ReceiverServer() as server:
        receiver = Receiver()
        food_bank = await stack.registered("ざまフードバンク", server.add("tzp-secret-path", receiver))
        await stack.route_no_food_to(food_bank)

        secret = await stack.post(food_bank, "webhook-secret/rotate")
        token = await stack.post(food_bank, "api-token/rotate")
        assert secret.status_code == token.status_code == 201, (secret.text, token.text)
        new_secret, new_token = secret.json()["webhook_secret"], token.json()["api_token"]
        await stack.consult(food_bank)
        [request] = await eventually(arrived(receiver, REQUESTED), until=bool)

    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for key in (new_secret, food_bank["webhook_secret"]):
        Webhook(key).verify(request.body, request.headers)  # raises if no signature is this secret's
    for key in (new_token, food_bank["api_token"]):
        answer = await stack.call(stack.partners, "GET", f"/v1/partners/{food_bank['partner_id']}/deliveries",
                                  token=key)
        assert answer.status_code == 200, answer.text
    log = stack.partners.log_path.read_text()
    assert "tzp-secret-path" not in log and f":{server.port}" not in log, "no webhook URL in the service's log"


async def test_once_the_overlap_is_over_only_the_new_secret_signs_and_only_the_new_token_works(
        service_process, auth_headers):
    stack = await a_stack(service_process, auth_headers, TSUNAGU_PARTNERS_CREDENTIAL_OVERLAP_S="0")
    async with ReceiverServer() as server:
        receiver = Receiver()
        food_bank = await stack.registered("ざまフードバンク", server.add("hook", receiver))
        await stack.route_no_food_to(food_bank)

        secret = await stack.post(food_bank, "webhook-secret/rotate")
        token = await stack.post(food_bank, "api-token/rotate")
        assert secret.status_code == token.status_code == 201, (secret.text, token.text)
        await stack.consult(food_bank)
        [request] = await eventually(arrived(receiver, REQUESTED), until=bool)

    assert len(request.headers["webhook-signature"].split(" ")) == 1
    Webhook(secret.json()["webhook_secret"]).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(food_bank["webhook_secret"]).verify(request.body, request.headers)
    path = f"/v1/partners/{food_bank['partner_id']}/deliveries"
    assert (await stack.call(stack.partners, "GET", path, token=token.json()["api_token"])).status_code == 200
    assert (await stack.call(stack.partners, "GET", path, token=food_bank["api_token"])).status_code == 401


async def test_a_deactivated_partner_gets_no_webhook_its_tokens_stop_and_its_history_stays(stack):
    async with ReceiverServer() as server:
        food, other = Receiver(), Receiver()
        food_bank = await stack.registered("ざまフードバンク", server.add("food", food))
        pantry = await stack.registered("こども食堂", server.add("pantry", other))
        await stack.route_no_food_to(food_bank)
        await stack.consult(food_bank)
        await eventually(arrived(food, REQUESTED), until=bool)

        answer = await stack.post(food_bank, "deactivate")
        assert answer.status_code == 200, answer.text
        seen_before = len(food.received)
        await stack.consult(food_bank, pantry)
        # The pantry hears of the consultation in the same fan-out that would have reached the food bank.
        await eventually(arrived(other, REGISTERED), until=bool)

    assert len(food.received) == seen_before, "no webhook after deactivation"
    history = await stack.deliveries(food_bank)
    assert history and {d["status"] for d in history} <= {"delivered", "cancelled"}
    refused = await stack.call(stack.partners, "GET", f"/v1/partners/{food_bank['partner_id']}/deliveries",
                               token=food_bank["api_token"])
    assert refused.status_code == 401 and refused.json()["message_ja"]
    again = await stack.post(food_bank, "deactivate")
    assert again.status_code == 200, "asking again is harmless"
    assert (await stack.post(food_bank, "api-token/rotate")).status_code == 409


REFUSED = ["http://partner.example.org/hook", "https://user:pw@partner.example.org/hook", "https://10.0.0.1/hook",
           "https://169.254.169.254/latest/meta-data", "https://[fe80::1]/hook", "https://127.0.0.1:8001/hook",
           "http://127.0.0.1:9092/", "https://partner.example.org:5432/hook", "ftp://partner.example.org/hook"]


async def test_a_webhook_url_that_breaks_a_rule_is_refused_at_registration_and_at_a_change(stack):
    partner = await stack.registered("ざまフードバンク", "https://partner.example.org/hook")
    for url in REFUSED:
        refused = await stack.register("ざまフードバンク", url)
        assert refused.status_code == 422, (url, refused.text)
        [error] = refused.json()["errors"]
        assert error["field"] == "webhook_url" and error["message_ja"] and error["message_en"], error
        changed = await stack.call(stack.partners, "PUT", f"/v1/partners/{partner['partner_id']}/webhook",
                                   json={"webhook_url": url})
        assert changed.status_code == 422, (url, changed.text)
    assert (await stack.call(stack.partners, "GET", "/openapi.json")).status_code == 200
    listed = await stack.call(stack.partners, "GET", f"/v1/partners/{partner['partner_id']}/deliveries",
                              token=partner["api_token"])
    assert listed.status_code == 200, "the refused changes left the partner as it was"


async def test_a_host_that_resolves_to_a_forbidden_address_fails_its_delivery_with_the_reason(stack):
    metadata = await stack.registered("ざまフードバンク", f"https://{METADATA_HOST}/hook")
    intranet = await stack.registered("こども食堂", "https://intranet.partner.example/hook")
    await stack.consult(metadata, intranet)

    # Each partner gets the case's events it may see (the consultation, then its sheet): every one of
    # them fails at once, for the reason of the address, without naming it.
    for partner, reason in ((metadata, "url_refused:metadata"), (intranet, "url_refused:private")):
        deliveries = await eventually(lambda p=partner: stack.deliveries(p),
                                      until=lambda ds: ds and all(d["status"] == "dead" for d in ds))
        for delivery in deliveries:
            assert delivery["last_error"] == reason and delivery["attempts"] == 1, delivery
            assert METADATA_HOST not in delivery["last_error"]


async def test_a_webhook_moves_to_a_new_url(stack):
    async with ReceiverServer() as server:
        old, new = Receiver(), Receiver()
        food_bank = await stack.registered("ざまフードバンク", server.add("old", old))
        await stack.route_no_food_to(food_bank)
        moved = await stack.call(stack.partners, "PUT", f"/v1/partners/{food_bank['partner_id']}/webhook",
                                 json={"webhook_url": server.add("new", new)})
        assert moved.status_code == 200, moved.text
        await stack.consult(food_bank)
        await eventually(arrived(new, REQUESTED), until=bool)
    assert old.received == []
