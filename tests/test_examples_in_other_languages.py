"""The examples in other languages work against the real system: the Go subscriber reads a partner's
own topic with the partner's SCRAM user and checks each record against contracts/schemas, and the
Python and Node webhook receivers verify partner-notification's signed deliveries.

intake, referral and partner-notification run as real processes on the real broker; the examples
run as the programs a partner would run (examples/)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from standardwebhooks.webhooks import Webhook

from tsunagu_teststack.infrastructure import repo_root
from tsunagu_teststack.pii import namespace_records
from tsunagu_teststack.waiting import eventually

sys.path.insert(0, str(repo_root() / "deploy"))
import jaegerctl  # noqa: E402  (Go is found and its caches kept the way Jaeger's build does)

EXAMPLES = repo_root() / "examples"
REQUESTED = "tsunagu.referral.requested.v1"
PYTHON = sys.executable


@pytest.fixture(scope="session")
def go_subscriber(tmp_path_factory) -> Path:
    """examples/go-subscriber built with the Go that builds Jaeger, its modules from the module proxy
    pinned by go.sum (cached under ~/.cache/tsunagu/go-examples, so later runs take seconds)."""
    go = jaegerctl.find_go()
    env = jaegerctl.go_environment(jaegerctl.CACHE / "go-examples") | {"GOFLAGS": "-mod=readonly"}
    binary = tmp_path_factory.mktemp("go") / "go-subscriber"
    built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=EXAMPLES / "go-subscriber", env=env,
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, f"go build failed:\n{built.stdout}\n{built.stderr}"
    return binary


async def consult(intake, auth_headers, needs: list[str], partner_ids: list[str]) -> str:
    """A consultation with these needs, the person consenting to a referral to each partner: its case id."""
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
        response = await client.post("/v1/consultations", headers=auth_headers("counter"), json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": needs,
            "primary_need": needs[0],
            "consents": [{"recipient": {"kind": "partner", "partner_id": p}, "purpose": "referral",
                          "method": "written"} for p in partner_ids]})
    assert response.status_code == 201, response.text
    return response.json()["case_id"]


async def register(partners, auth_headers, name: str, need: str, **receiving) -> dict:
    async with httpx.AsyncClient(base_url=partners.url, timeout=60, headers=auth_headers("coordinator")) as client:
        response = await client.post("/v1/partners", json={
            "name": name, "need_categories": [need], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, **receiving})
    assert response.status_code == 201, response.text
    return response.json()


async def route(referral, auth_headers, need: str, partner_id: str) -> None:
    async with httpx.AsyncClient(base_url=referral.url, timeout=30) as client:
        routed = await client.put(f"/v1/routing/{need}", headers=auth_headers("coordinator"),
                                  json={"candidates": [{"kind": "partner", "partner_id": partner_id}]})
    assert routed.status_code == 200, routed.text


async def the_go_subscriber_reads_the_partners_topic(infrastructure, go_subscriber: Path, kafka: dict,
                                                     case_id: str) -> None:
    """The partner's real referral is valid; copies of it broken in five ways are each reported with
    why, never with a value from the record; the offsets of every record printed are committed. A
    wrong password is reported as such, not as records that never come."""
    topic = kafka["topic_prefix"] + "deliveries.v1"

    def requested(records):
        return [r for r in records if dict(r.headers).get("ce_type") == REQUESTED.encode() and r.key == case_id.encode()]

    on_topic = await eventually(lambda: namespace_records(infrastructure.kafka_bootstrap, topic,
                                                          options=infrastructure.kafka_options),
                                until=lambda records: bool(requested(records)), attempts=300)
    real = requested(on_topic)[0]
    data = json.loads(real.value)
    broken = {  # what each copy of the real record breaks, and the line the subscriber should print for it
        "need outside the contracts": (data | {"need": "not_a_need"}, {}, "/need: enum"),
        "referral id not a uuid": (data | {"referral_id": "looks-like-a-value-7731"}, {}, "/referral_id: format"),
        "no referral id": ({k: v for k, v in data.items() if k != "referral_id"}, {},
                           "/: required (missing property 'referral_id')"),
        "not JSON": (b"{not json", {}, "the value is not JSON"),
        "no event type": (data, {"ce_type": None}, "no ce_type header"),
    }
    ids = {what: str(uuid.uuid4()) for what in broken}
    for what, (value, headers, _) in broken.items():
        await publish_copy(infrastructure, topic, real, value, headers | {"ce_id": ids[what].encode()})
    count = len(await namespace_records(infrastructure.kafka_bootstrap, topic, options=infrastructure.kafka_options))
    group = kafka["group_prefix"] + "go-subscriber"

    def run_subscriber(password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(go_subscriber), "-records", str(count), "-timeout", "60s"], capture_output=True, text=True,
            timeout=120, cwd=EXAMPLES / "go-subscriber", check=False,
            env={"PATH": os.environ["PATH"], "TSUNAGU_KAFKA_BOOTSTRAP": infrastructure.kafka_bootstrap,
                 "TSUNAGU_KAFKA_USERNAME": kafka["username"], "TSUNAGU_KAFKA_PASSWORD": password,
                 "TSUNAGU_KAFKA_TOPIC": topic, "TSUNAGU_KAFKA_GROUP": group})

    wrong = await asyncio.to_thread(run_subscriber, kafka["password"] + "-wrong")
    ran = await asyncio.to_thread(run_subscriber, kafka["password"])

    assert wrong.returncode == 1 and "SASL_AUTHENTICATION_FAILED" in wrong.stderr, "a wrong password is said at once"
    assert wrong.stdout == "" and kafka["password"] not in wrong.stderr

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert f"type={REQUESTED} id={dict(real.headers)['ce_id'].decode()} valid" in lines
    for what, (_, headers, reason) in broken.items():
        shown_type = "-" if "ce_type" in headers else REQUESTED
        assert f"type={shown_type} id={ids[what]} invalid: {reason}" in lines, (what, lines)
    assert len(lines) == count
    assert all(line.endswith(" valid") for line in lines if not any(i in line for i in ids.values())), lines
    assert "looks-like-a-value" not in ran.stdout, "a value from the record is never printed"
    assert kafka["password"] not in ran.stdout + ran.stderr
    assert await committed(infrastructure, group, topic) == count, "offsets committed for every record printed"


async def publish_copy(infrastructure, topic: str, record, value, headers: dict) -> None:
    """The record again with another value and some headers replaced (None: left out), written as the
    admin (the partner's own user may only read its topic)."""
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    kept = [(k, v) for k, v in record.headers if k not in headers]
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, body, key=record.key,
                                     headers=kept + [(k, v) for k, v in headers.items() if v is not None])
    finally:
        await producer.stop()


async def committed(infrastructure, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic)


class ReceiverProcess:
    """One of the example receivers, run as a partner would run it, on a free loopback port."""

    def __init__(self, name: str, command: list[str]):
        self.name, self.command = name, command
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/tsunagu"
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, secret: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, cwd=EXAMPLES / self.name, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "WEBHOOK_SECRET": secret, "WEBHOOK_PORT": str(self.port)})
        self.reading = asyncio.create_task(self.read())
        await eventually(lambda: asyncio.sleep(0, self.lines), until=lambda lines: bool(lines))
        assert self.lines[0].startswith("listening on"), self.lines

    async def read(self) -> None:
        async for line in self.process.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def referrals_by_need(referral, auth_headers, case_id: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=referral.url, timeout=30) as client:
        listed = await client.get(f"/v1/cases/{case_id}/referrals", headers=auth_headers("coordinator"))
    return {r["need"]: r["referral_id"] for r in listed.json().get("referrals", [])} if listed.status_code == 200 else {}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed(secret: str, body: str | None = None, *, webhook_id: str | None = None,
           at: datetime | None = None) -> tuple[bytes, dict]:
    """A delivery as partner-notification signs it (Standard Webhooks), by default a referral."""
    if body is None:
        body = json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "type": REQUESTED,
                           "data": {"referral_id": str(uuid.uuid4())}})
    webhook_id, at = webhook_id or f"msg_{uuid.uuid4().hex}", at or datetime.now(UTC)
    return body.encode(), {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
                           "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
                           "content-type": "application/cloudevents+json"}


RECEIVERS = {"python": ("webhook-receiver-python", [PYTHON, "receiver.py"]),
             "node": ("webhook-receiver-node", ["node", "receiver.js"])}


@pytest.mark.parametrize("language", RECEIVERS)
async def test_a_receiver_refuses_what_it_cannot_verify_or_read_and_applies_a_retried_delivery_once(language):
    secret = new_secret()
    receiver = ReceiverProcess(*RECEIVERS[language])
    await receiver.start(secret)
    delivery = signed(secret, webhook_id="msg_retried")
    try:
        async with httpx.AsyncClient(base_url=receiver.url, timeout=10) as client:
            async def post(body: bytes, headers: dict | None = None) -> httpx.Response:
                return await client.post("", content=body, headers=headers)

            answers = {
                "delivered": await post(*delivery),
                "delivered again": await post(*delivery),
                "signed with another secret": await post(*signed(new_secret())),
                "body changed after signing": await post(delivery[0].replace(b"referral", b"r"), delivery[1]),
                "signed ten minutes ago": await post(*signed(secret, at=datetime.now(UTC) - timedelta(minutes=10))),
                "unsigned": await post(delivery[0]),
                "signed but not JSON": await post(*signed(secret, "not json")),
                "signed but not an object": await post(*signed(secret, "[1]")),
                "larger than a megabyte": await post(*signed(secret, "x" * ((2 << 20) + 7))),
            }
        await eventually(lambda: asyncio.sleep(0, receiver.lines), until=lambda lines: len(lines) >= 8)
    finally:
        await receiver.stop()

    assert {what: a.status_code for what, a in answers.items()} == {
        "delivered": 204, "delivered again": 204, "signed with another secret": 401,
        "body changed after signing": 401, "signed ten minutes ago": 401, "unsigned": 401,
        "signed but not JSON": 400, "signed but not an object": 400, "larger than a megabyte": 413}
    for what, a in answers.items():
        if a.status_code >= 400:
            assert a.json()["message_ja"] and a.json()["message_en"], what
    applied = [line for line in receiver.lines if line.startswith("accepted")]
    assert len(applied) == 1 and "webhook-id=msg_retried" in applied[0]
    assert any(line.startswith("duplicate webhook-id=msg_retried") for line in receiver.lines)
    assert "not json" not in "\n".join(receiver.lines), "a body that is not JSON is never quoted"


async def each_receiver_accepts_its_referral_and_refuses_a_forged_delivery(
        referral, auth_headers, case_id: str, receivers: dict[str, ReceiverProcess]) -> None:
    referral_of = await eventually(lambda: referrals_by_need(referral, auth_headers, case_id),
                                   until=lambda found: set(receivers) <= set(found), attempts=300)
    for need, receiver in receivers.items():
        expected = f"type={REQUESTED} referral_id={referral_of[need]}"
        accepted = await eventually(lambda: asyncio.sleep(0, receiver.lines),
                                    until=lambda lines: any(line.startswith("accepted") and line.endswith(expected)
                                                            for line in lines), attempts=300)
        assert not any(line.startswith("refused") for line in accepted), (receiver.name, accepted)

    async with httpx.AsyncClient(timeout=10) as client:
        for receiver in receivers.values():
            body, headers = signed(new_secret())  # not the partner's secret
            answer = await client.post(receiver.url, content=body, headers=headers)
            assert answer.status_code == 401, (receiver.name, answer.text)
            assert answer.json()["message_en"] == "the signature does not verify"
            await eventually(lambda: asyncio.sleep(0, receiver.lines),
                             until=lambda lines: any(line.startswith(f"refused webhook-id={headers['webhook-id']}")
                                                     for line in lines))


@pytest.mark.stack
async def test_a_real_referral_reaches_the_go_subscriber_on_the_partners_topic_and_each_webhook_receiver(
        infrastructure, service_process, auth_headers, go_subscriber):
    """One stack for all three examples: a consultation with three needs, each referred to a partner
    that receives it one way (on a SCRAM broker only: its own topic, read by the Go subscriber)."""
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification", extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    receivers = {"debt": ReceiverProcess(*RECEIVERS["python"]), "family": ReceiverProcess(*RECEIVERS["node"])}
    try:
        partner_of = {}
        for need, receiver in receivers.items():
            registered = await register(partners, auth_headers, f"{receiver.name} の団体", need,
                                        webhook_url=receiver.url)
            await receiver.start(registered["webhook_secret"])
            partner_of[need] = registered["partner_id"]
        kafka = None
        if infrastructure.kafka_admin is not None:  # a PLAINTEXT broker has no users to give a partner
            registered = await register(partners, auth_headers, "ざまフードバンク", "no_food", kafka_topic=True)
            partner_of["no_food"], kafka = registered["partner_id"], registered["kafka_credentials"]
        for need, partner_id in partner_of.items():
            await route(referral, auth_headers, need, partner_id)

        case_id = await consult(intake, auth_headers, list(partner_of), list(partner_of.values()))

        await each_receiver_accepts_its_referral_and_refuses_a_forged_delivery(referral, auth_headers, case_id,
                                                                              receivers)
        if kafka is not None:
            await the_go_subscriber_reads_the_partners_topic(infrastructure, go_subscriber, kafka, case_id)
    finally:
        for receiver in receivers.values():
            await receiver.stop()
