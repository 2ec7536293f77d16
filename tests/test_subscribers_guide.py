"""docs/subscribers.md, kept honest: each `sh` block's curl call is parsed (method, URL, headers,
body) and sent as written to the real services, in the guide's order; each `python` block is run
and its functions used on what the services really send.

Only what the guide cannot know is the test's own: the addresses of the test's processes, the
webhook URL (a loopback receiver for the guide's https://foodbank.example) and the consultation
a counter registers between registration and the referral's arrival.
"""

import asyncio
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tsunagu_partners.domain.commands import RespondToReferral
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

REPO = Path(__file__).resolve().parent.parent
GUIDE = (REPO / "docs/subscribers.md").read_text()
DOCUMENTED_BASE = "http://127.0.0.1:8004"
REQUESTED, TEST_EVENT = "tsunagu.referral.requested.v1", "tsunagu.partners.webhook-test.v1"


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: dict | None

    @property
    def path(self) -> str:
        return self.url.removeprefix(DOCUMENTED_BASE)

    async def send(self, base: str, variables: dict[str, str], **body_changes) -> httpx.Response:
        def filled(text: str) -> str:
            return re.sub(r"\$([A-Z_]+)", lambda m: variables[m.group(1)], text)

        body = None if self.body is None else {**self.body, **body_changes}
        async with httpx.AsyncClient(timeout=60) as client:
            return await client.request(self.method, filled(self.url).replace(DOCUMENTED_BASE, base),
                                        headers={k: filled(v) for k, v in self.headers.items()}, json=body)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, re.S)


def curl_calls() -> list[Call]:
    calls = []
    for line in (line for block in blocks("sh") for line in block.splitlines() if line.strip()):
        argv = shlex.split(line)  # shlex expands nothing: variables stay as written
        assert argv[0] == "curl", line
        options = dict(zip(argv[1::], argv[2::]))
        headers = dict(h.split(": ", 1) for a, h in zip(argv, argv[1:]) if a == "-H")
        url = next(a for a in argv[1:] if a.startswith(("http://", "$")))
        calls.append(Call(options.get("-X", "GET"), url, headers, json.loads(options["-d"]) if "-d" in options else None))
    return calls


def guide_functions() -> dict:
    namespace: dict = {}
    for block in blocks("python"):
        exec(compile(block, "docs/subscribers.md", "exec"), namespace)  # noqa: S102 - the guide's own code
    return namespace


def test_every_call_in_the_guide_is_a_partner_notification_route_and_every_answer_body_is_valid():
    routes = json.loads((REPO / "services/partner-notification/openapi.json").read_text())["paths"]
    calls = curl_calls()
    assert [c.method for c in calls] == ["POST", "POST", "GET", "POST", "POST", "POST"]
    for call in calls:
        if call.url.startswith("$"):
            continue  # the details link, as the webhook gives it
        template = re.sub(r"\$([A-Z]+)_ID", lambda m: "{" + m.group(1).lower() + "_id}", call.path)
        assert call.method.lower() in routes.get(template, {}), f"{call.method} {template}"
    answers = [json.loads(s) for s in re.findall(r'`(\{"response":.*?\})`', GUIDE, re.S)]
    for body in [c.body for c in calls if c.body and "response" in c.body] + answers:
        RespondToReferral.model_validate(body)
    assert {"verify", "deliveries_consumer"} <= set(guide_functions())


def test_the_readme_links_the_guide():
    assert "(docs/subscribers.md)" in (REPO / "README.md").read_text()


@pytest.mark.stack
async def test_a_partners_developer_follows_the_guide_from_registration_to_completed_support(
        service_process, auth_headers, infrastructure, kafka_namespace):
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification", extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    guide = guide_functions()
    register, test, details, accept, contact, complete = curl_calls()
    coordinator = auth_headers("coordinator")
    variables = {"COORDINATOR_TOKEN": coordinator["Authorization"].removeprefix("Bearer ")}

    async with ReceiverServer() as server:
        receiver = Receiver()
        registered = await register.send(partners.url, variables, webhook_url=server.add("hook", receiver))
        assert registered.status_code == 201, registered.text
        partner = registered.json()
        secret = partner["webhook_secret"]
        variables |= {"PARTNER_ID": partner["partner_id"], "API_TOKEN": partner["api_token"]}

        tested = await test.send(partners.url, variables)
        assert tested.status_code == 200, tested.text
        assert tested.json()["delivered"] is True
        [test_event] = receiver.of_type(TEST_EVENT)
        assert guide["verify"](secret, test_event.body, test_event.headers)["type"] == TEST_EVENT
        assert guide["verify"]("whsec_" + "A" * 32, test_event.body, test_event.headers) is None

        # A counter hears a person with nothing to eat, who consents to the food bank.
        async with httpx.AsyncClient(timeout=60) as client:
            routed = await client.put(f"{referral.url}/v1/routing/no_food", headers=coordinator, json={
                "candidates": [{"kind": "partner", "partner_id": partner["partner_id"]}]})
            assert routed.status_code == 200, routed.text
            consulted = await client.post(f"{intake.url}/v1/consultations", headers=auth_headers("counter"), json={
                "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
                "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": ["no_food"],
                "primary_need": "no_food", "consents": [{"recipient": {"kind": "partner",
                                                                      "partner_id": partner["partner_id"]},
                                                        "purpose": "referral", "method": "written"}]})
            assert consulted.status_code == 201, consulted.text
        [request] = await eventually(lambda: asyncio.sleep(0, receiver.of_type(REQUESTED)), until=bool)
        event = guide["verify"](secret, request.body, request.headers)
        variables |= {"DETAILS_URL": event["detailsurl"], "REFERRAL_ID": event["data"]["referral_id"]}

        fetched = await details.send(partners.url, variables)
        answers = [await step.send(partners.url, variables) for step in (accept, contact, complete)]

    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["person"]["name"] == "座間 花子"
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]

    own_topic = await register.send(partners.url, variables, name="さがみ食堂", webhook_url=None, kafka_topic=True)
    assert own_topic.status_code == 201, own_topic.text
    credentials = own_topic.json()["kafka_credentials"]
    consumer = guide["deliveries_consumer"](credentials, infrastructure.kafka_bootstrap)
    await consumer.start()
    try:
        assert kafka_namespace + own_topic.json()["kafka_topic"] in await consumer.topics()
    finally:
        await consumer.stop()
