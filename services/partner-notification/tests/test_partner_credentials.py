"""A partner's credentials and webhook on in-memory fakes (conftest.py): rotation keeps the old
credential working beside the new one for the overlap; a webhook URL must point somewhere the
service may send; a deactivated partner stops receiving and acting and keeps its history."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

import pytest
from cryptography.fernet import Fernet, MultiFernet
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import ConsentGranted, DeliveryFailed, Envelope, ReferralRequested, uuid7
from tsunagu_contracts.japan import JST
from tsunagu_partners.adapters.webhook_transport import static_then_system
from tsunagu_partners.bootstrap import build_service
from tsunagu_partners.domain.commands import RegisterPartner
from tsunagu_partners.domain.webhook_urls import STACK_PORTS, UrlRefused, WebhookUrlRules
from tsunagu_partners.domain.webhooks import cloudevent_body, signed_headers
from tsunagu_partners.handlers import fan_out as f
from tsunagu_partners.handlers.registry import (
    change_webhook_url, deactivate, partner_of_token, register_partner, rotate_api_token, rotate_webhook_secret,
    webhook_secret,
)
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_servicehost.errors import Rejected, Why
from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_telemetry.logs import configure_logging

MORNING = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
CIPHER = MultiFernet([Fernet(Fernet.generate_key())])
DAY = 24 * 3600
STRICT, LOOPBACK = WebhookUrlRules(), WebhookUrlRules(allow_loopback=True)


def registration(url: str | None = "https://partner.example.org/hook", kafka: bool = False) -> RegisterPartner:
    return RegisterPartner(name="ざまフードバンク", need_categories=["no_food"], areas=["142166"],
                           contact={"department": "相談窓口", "email": "desk@example.org"},
                           webhook_url=url, kafka_topic=kafka)


async def a_partner(uow, url: str | None = "https://partner.example.org/hook", kafka: bool = False,
                    rules: WebhookUrlRules = STRICT) -> dict:
    return await register_partner(uow, registration(url, kafka), partner_id=uuid7(), cipher=CIPHER, now=MORNING,
                                  url_rules=rules)


def consent(case_id: UUID, partner_id: UUID) -> Envelope[ConsentGranted]:
    return Envelope(data=ConsentGranted(
        case_id=case_id, municipality_code="142166", occurred_at=MORNING, consent_id=uuid7(), person_ref=uuid7(),
        recipient={"kind": "partner", "partner_id": partner_id}, purpose="referral", method="written"),
        id=uuid7(), source="/tsunagu/intake")


def referral(case_id: UUID, partner_id: UUID) -> Envelope[ReferralRequested]:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return Envelope(data=ReferralRequested.model_validate({
        **example, "case_id": str(case_id), "referral_id": str(uuid7()), "need": "no_food",
        "occurred_at": MORNING.isoformat(), "recipient": {"kind": "partner", "partner_id": str(partner_id)}}),
        id=uuid7(), source="/tsunagu/referral")


async def a_referral_queued_for(uow, partner_id: UUID) -> None:
    case_id = uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner_id))
    await f.on_referral_requested(uow, referral(case_id, partner_id))


# rotation -------------------------------------------------------------------------------------

async def test_after_a_token_rotation_both_tokens_work_until_the_overlap_ends_then_only_the_new_one(uow, repo):
    partner = await a_partner(uow)
    partner_id = UUID(partner["partner_id"])

    rotated = await rotate_api_token(uow, partner_id, overlap_s=DAY)

    assert rotated["api_token"] != partner["api_token"] and rotated["previous_valid_until"] > datetime.now(UTC)
    assert await partner_of_token(uow, partner["api_token"]) == partner_id
    assert await partner_of_token(uow, rotated["api_token"]) == partner_id
    repo.tables.partners[partner_id]["overlap_ended"] = True
    assert await partner_of_token(uow, partner["api_token"]) is None
    assert await partner_of_token(uow, rotated["api_token"]) == partner_id


async def test_a_rotated_token_is_stored_only_as_its_hash(uow, repo):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    rotated = await rotate_api_token(uow, partner_id, overlap_s=DAY)
    assert rotated["api_token"].encode() not in repr(repo.tables.partners[partner_id]).encode()


async def test_a_rotated_webhook_secret_is_sealed_and_kept_beside_the_previous_one(uow, repo):
    partner = await a_partner(uow)
    partner_id = UUID(partner["partner_id"])

    rotated = await rotate_webhook_secret(uow, partner_id, cipher=CIPHER, overlap_s=DAY)

    row = repo.tables.partners[partner_id]
    assert webhook_secret(CIPHER, row["webhook_secret"]) == rotated["webhook_secret"]
    assert webhook_secret(CIPHER, row["previous_webhook_secret"]) == partner["webhook_secret"]


async def test_a_partner_without_a_webhook_has_no_secret_to_rotate(uow):
    partner_id = UUID((await a_partner(uow, url=None, kafka=True))["partner_id"])
    with pytest.raises(Rejected) as refusal:
        await rotate_webhook_secret(uow, partner_id, cipher=CIPHER, overlap_s=DAY)
    assert refusal.value.why is Why.CONFLICT


async def test_an_unknown_partner_has_nothing_to_rotate(uow):
    with pytest.raises(Rejected) as refusal:
        await rotate_api_token(uow, uuid7(), overlap_s=DAY)
    assert refusal.value.why is Why.NOT_FOUND


def test_during_the_overlap_a_webhook_verifies_with_the_new_secret_and_with_the_previous_one():
    new, previous = "whsec_" + "A" * 32, "whsec_" + "B" * 32
    body = cloudevent_body(Envelope(data=ReferralRequested.model_validate(
        ReferralRequested.model_json_schema()["examples"][0]), id=uuid7(), source="/tsunagu/referral"))
    headers = signed_headers(new, "msg_1", body, datetime.now(UTC), previous)

    assert headers["webhook-signature"].count("v1,") == 2
    assert headers["webhook-signature"].split(" ")[0] == signed_headers(new, "msg_1", body, datetime.now(UTC))[
        "webhook-signature"], "the new secret's signature first"
    for secret in (new, previous):
        Webhook(secret).verify(body, headers)  # raises when no signature matches
    with pytest.raises(Exception):
        Webhook("whsec_" + "C" * 32).verify(body, headers)


async def test_the_sender_signs_with_both_secrets_while_the_overlap_lasts(uow, repo, new_uow):
    partner = await a_partner(uow)
    partner_id = UUID(partner["partner_id"])
    rotated = await rotate_webhook_secret(uow, partner_id, cipher=CIPHER, overlap_s=DAY)
    await a_referral_queued_for(uow, partner_id)
    [delivery] = repo.tables.deliveries
    sent = []

    async def post(client, url, body, headers):
        sent.append((body, headers))
        return 200, None

    sender = WebhookSender(None, new_uow, CIPHER, DeliveryPolicy())
    sender.post = post
    row = {**delivery, "attempts": 1, "status": "sending", "webhook_url": "https://partner.example.org/hook",
           **{k: repo.tables.partners[partner_id][k] for k in ("webhook_secret", "previous_webhook_secret")}}
    delivery["status"] = "sending"
    sender.in_flight[partner_id] += 1
    await sender.attempt(None, row)

    [(body, headers)] = sent
    for secret in (rotated["webhook_secret"], partner["webhook_secret"]):
        Webhook(secret).verify(body, headers)


# webhook URLs ---------------------------------------------------------------------------------

REFUSED = {
    "plain http": "http://partner.example.org/hook",
    "a user and password": "https://user:secret@partner.example.org/hook",
    "a private address": "https://10.1.2.3/hook",
    "another private range": "https://172.16.0.1/hook",
    "a home network": "https://192.168.1.1/hook",
    "a unique local IPv6 address": "https://[fd12::1]/hook",
    "link-local": "https://169.254.10.10/hook",
    "IPv6 link-local": "https://[fe80::1]/hook",
    "cloud metadata": "https://169.254.169.254/latest/meta-data",
    "cloud metadata over IPv6": "https://[fd00:ec2::254]/",
    "unspecified": "https://0.0.0.0/hook",
    "multicast": "https://224.0.0.1/hook",
    "a private address mapped into IPv6": "https://[::ffff:10.0.0.1]/hook",
    "a private address behind the NAT64 prefix": "https://[64:ff9b::a00:1]/hook",
    "the loopback as an IPv4-compatible address": "https://[::7f00:1]/hook",
    "cloud metadata through 6to4": "https://[2002:a9fe:a9fe::1]/hook",
    "a local-use NAT64 address": "https://[64:ff9b:1::a00:1]/hook",
    "an IPv6 site-local address": "https://[fec0::1]/hook",
    "the loopback": "https://127.0.0.1:44300/hook",
    "localhost": "https://localhost:44300/hook",
    "the stack's PostgreSQL port": "https://partner.example.org:5432/hook",
}


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
async def test_registration_refuses_a_webhook_url_that_breaks_a_rule_and_stores_nothing(uow, repo, url):
    with pytest.raises(Rejected) as refusal:
        await a_partner(uow, url=url)
    assert refusal.value.why is Why.INVALID and refusal.value.field == "webhook_url"
    assert refusal.value.message_ja and refusal.value.message_en
    assert url not in refusal.value.message_en, "the reason, not the URL"
    assert repo.tables.partners == {}


LOOPBACK_REFUSED = {
    "a service's port": "http://127.0.0.1:8004/hook",
    "Kafka's port": "http://127.0.0.1:9092/hook",
    "Jaeger's port": "http://localhost:16686/hook",
    "plain http elsewhere": "http://partner.example.org/hook",
    "a user and password": "http://user:pw@127.0.0.1:40000/hook",
}


@pytest.mark.parametrize("url", LOOPBACK_REFUSED.values(), ids=LOOPBACK_REFUSED.keys())
async def test_with_loopback_allowed_the_stacks_own_ports_and_other_hosts_over_http_are_still_refused(uow, url):
    with pytest.raises(Rejected):
        await a_partner(uow, url=url, rules=LOOPBACK)


async def test_with_loopback_allowed_a_loopback_receiver_and_a_public_https_one_are_accepted(uow):
    for url in ("http://127.0.0.1:40000/hook", "http://localhost:40000/hook", "https://partner.example.org/hook"):
        await a_partner(uow, url=url, rules=LOOPBACK)


def test_only_https_and_loopback_http_are_webhook_schemes():
    for url in ("ftp://partner.example.org/hook", "file:///etc/passwd", "gopher://partner.example.org/"):
        with pytest.raises(UrlRefused) as refusal:
            LOOPBACK.check_url(url)
        assert refusal.value.code == "scheme"


def test_the_refused_ports_are_every_port_of_the_stack():
    stack = stack_config()
    ports = {s[key] for s in stack["services"].values() for key in ("port", "internal_port") if key in s}
    ports |= {stack["kafka"]["port"], stack["kafka"]["controller_port"], stack["postgres"]["port"]}
    ports |= {v for k, v in stack["jaeger"].items() if k.endswith("_port")}
    ports |= {stack["console"]["port"]} | {v for k, v in stack["mailsink"].items() if k.endswith("_port")}
    assert ports <= STACK_PORTS


async def test_a_webhook_url_change_is_checked_as_at_registration(uow, repo):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    with pytest.raises(Rejected) as refusal:
        await change_webhook_url(uow, partner_id, "https://169.254.169.254/", cipher=CIPHER, url_rules=STRICT)
    assert refusal.value.field == "webhook_url"
    assert repo.tables.partners[partner_id]["webhook_url"] == "https://partner.example.org/hook"


async def test_a_new_webhook_url_is_used_and_lifts_a_410s_disabling(uow, repo):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    repo.tables.partners[partner_id]["webhook_disabled"] = True
    changed = await change_webhook_url(uow, partner_id, "https://partner.example.org/v2", cipher=CIPHER,
                                       url_rules=STRICT)
    assert changed["webhook_secret"] is None, "the secret is kept"
    assert repo.tables.partners[partner_id]["webhook_url"] == "https://partner.example.org/v2"
    assert repo.tables.partners[partner_id]["webhook_disabled"] is False


async def test_a_partner_given_its_first_webhook_gets_its_secret_once(uow, repo):
    partner_id = UUID((await a_partner(uow, url=None, kafka=True))["partner_id"])
    changed = await change_webhook_url(uow, partner_id, "https://partner.example.org/hook", cipher=CIPHER,
                                       url_rules=STRICT)
    assert changed["webhook_secret"].startswith("whsec_")
    assert webhook_secret(CIPHER, repo.tables.partners[partner_id]["webhook_secret"]) == changed["webhook_secret"]


FORBIDDEN_ANSWERS = {"private": ["10.0.0.7"], "metadata": ["169.254.169.254"], "loopback": ["127.0.0.1"],
                     "link_local": ["fe80::1"]}


@pytest.mark.parametrize("code", FORBIDDEN_ANSWERS)
async def test_a_host_that_resolves_to_a_forbidden_address_fails_its_delivery_at_send_time(uow, repo, new_uow, code):
    partner_id = UUID((await a_partner(uow, url="https://partner.example.org/hook"))["partner_id"])
    await a_referral_queued_for(uow, partner_id)
    [delivery] = repo.tables.deliveries
    delivery["status"] = "sending"
    # One good address among the bad is still refused: every address is checked.
    resolve = static_then_system({"partner.example.org": ["93.184.215.14", *FORBIDDEN_ANSWERS[code]]})
    sender = WebhookSender(None, new_uow, CIPHER, DeliveryPolicy(), resolve=resolve)
    sender.in_flight[partner_id] += 1
    async with sender.client() as client:
        await sender.attempt(client, {**delivery, "attempts": 1, "webhook_url": "https://partner.example.org/hook",
                                      "webhook_secret": repo.tables.partners[partner_id]["webhook_secret"],
                                      "previous_webhook_secret": None})

    assert (delivery["status"], delivery["last_error"]) == ("dead", f"url_refused:{code}"), "at once, not retried"
    [failed] = [e for unit in new_uow.done for e in unit.of(DeliveryFailed)]
    assert failed.partner_id == partner_id


async def test_the_sender_connects_to_the_address_it_checked_and_keeps_the_host_name_in_the_request():
    async with ReceiverServer() as server:
        receiver = Receiver()
        path = server.add("hook", receiver).split("/", 3)[3]
        # The name is known only to the resolver seam: the request can only have gone to the address it gave.
        sender = WebhookSender(None, None, CIPHER, DeliveryPolicy(), url_rules=LOOPBACK,
                               resolve=static_then_system({"partner.localhost": ["127.0.0.1"]}))
        async with sender.client() as client:
            status, _ = await sender.post(client, f"http://partner.localhost:{server.port}/{path}", "{}", {})

    assert status == 200
    assert receiver.received[0].headers["host"] == f"partner.localhost:{server.port}"


async def test_a_loopback_name_that_resolves_elsewhere_is_refused():
    sender = WebhookSender(None, None, CIPHER, DeliveryPolicy(), url_rules=LOOPBACK,
                           resolve=static_then_system({"partner.localhost": ["10.0.0.8"]}))
    async with sender.client() as client:
        with pytest.raises(UrlRefused) as refusal:
            await client.post("http://partner.localhost:40000/hook", content=b"{}")
    assert refusal.value.code == "not_loopback"


async def test_a_url_stored_before_the_rules_is_refused_at_send_time(new_uow):
    sender = WebhookSender(None, new_uow, CIPHER, DeliveryPolicy())
    async with sender.client() as client:
        with pytest.raises(UrlRefused):
            await client.post("http://partner.example.org/hook", content=b"{}")


async def test_a_webhook_send_logs_no_url():
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    root = logging.getLogger()
    saved_handlers, saved_level, saved_httpx = root.handlers[:], root.level, logging.getLogger("httpx").level
    try:
        build_service()  # the service's own set-up, as `python -m tsunagu_partners serve` runs it
        configure_logging("partner-notification", logging.DEBUG)
        root.addHandler(Keep())
        async with ReceiverServer() as server:
            url = server.add("tzp-token-in-the-path", Receiver())
            sender = WebhookSender(None, None, CIPHER, DeliveryPolicy(), url_rules=LOOPBACK)
            async with sender.client() as client:
                status, _ = await sender.post(client, url, "{}", {"content-type": "application/json"})
        assert status == 200
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("httpx").setLevel(saved_httpx)
    text = "\n".join(r.getMessage() for r in captured)
    assert "tzp-token-in-the-path" not in text and str(server.port) not in text, text


# deactivation ---------------------------------------------------------------------------------

class RecordedKafkaAccess:
    def __init__(self):
        self.revoked: list[tuple[UUID, str | None]] = []

    async def revoke(self, partner_id, kafka_topic):
        self.revoked.append((partner_id, kafka_topic))


async def test_a_deactivated_partners_tokens_stop_working_at_once(uow, repo, new_uow):
    partner = await a_partner(uow)
    partner_id = UUID(partner["partner_id"])
    rotated = await rotate_api_token(uow, partner_id, overlap_s=DAY)

    await deactivate(new_uow, partner_id, kafka_access=RecordedKafkaAccess(), lease_s=1)

    assert await partner_of_token(uow, partner["api_token"]) is None
    assert await partner_of_token(uow, rotated["api_token"]) is None


async def test_deactivation_cancels_undelivered_deliveries_and_keeps_them_and_the_delivered_ones(uow, repo, new_uow):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    await a_referral_queued_for(uow, partner_id)
    await a_referral_queued_for(uow, partner_id)
    repo.tables.deliveries[0]["status"] = "delivered"

    answer = await deactivate(new_uow, partner_id, kafka_access=RecordedKafkaAccess(), lease_s=1)

    assert [d["status"] for d in repo.tables.deliveries] == ["delivered", "cancelled"]
    assert answer["deliveries_cancelled"] == 1


async def test_a_deactivated_partner_matches_no_fan_out_and_nothing_is_held_for_it(uow, repo, new_uow):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    case_id = uuid7()
    await f.on_consent_granted(uow, consent(case_id, partner_id))
    await deactivate(new_uow, partner_id, kafka_access=RecordedKafkaAccess(), lease_s=1)

    await f.on_referral_requested(uow, referral(case_id, partner_id))
    await f.on_referral_requested(uow, referral(uuid7(), partner_id))  # no consent: would have been held

    assert repo.tables.deliveries == [] and repo.tables.held == []


async def test_events_held_for_a_partner_until_a_consent_are_dropped_when_it_is_deactivated(uow, repo, new_uow):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    other_id = UUID((await a_partner(uow))["partner_id"])
    await f.on_referral_requested(uow, referral(uuid7(), partner_id))  # no consent yet: held
    await f.on_referral_requested(uow, referral(uuid7(), other_id))
    assert len(repo.tables.held) == 2

    await deactivate(new_uow, partner_id, kafka_access=RecordedKafkaAccess(), lease_s=1)

    assert [h["partner_id"] for h in repo.tables.held] == [other_id], "nothing would ever release them"


async def test_deactivation_takes_back_unpublished_forwards_and_revokes_the_partners_kafka_access(uow, repo, new_uow):
    created = await a_partner(uow, url=None, kafka=True)
    partner_id = UUID(created["partner_id"])
    repo.tables.unpublished.append({"id": 1, "topic": created["kafka_topic"], "record_key": str(uuid7())})
    access = RecordedKafkaAccess()

    await deactivate(new_uow, partner_id, kafka_access=access, lease_s=1)

    assert repo.tables.unpublished == []
    assert access.revoked == [(partner_id, created["kafka_topic"])]


async def test_a_deactivated_partner_cannot_be_given_new_credentials(uow, new_uow):
    partner_id = UUID((await a_partner(uow))["partner_id"])
    await deactivate(new_uow, partner_id, kafka_access=RecordedKafkaAccess(), lease_s=1)
    for rotate in (rotate_api_token(uow, partner_id, overlap_s=DAY),
                   rotate_webhook_secret(uow, partner_id, cipher=CIPHER, overlap_s=DAY),
                   change_webhook_url(uow, partner_id, "https://partner.example.org/v2", cipher=CIPHER,
                                      url_rules=STRICT)):
        with pytest.raises(Rejected) as refusal:
            await rotate
        assert refusal.value.why is Why.CONFLICT


async def test_deactivating_an_unknown_partner_is_not_found(new_uow):
    with pytest.raises(Rejected) as refusal:
        await deactivate(new_uow, uuid7(), kafka_access=RecordedKafkaAccess(), lease_s=1)
    assert refusal.value.why is Why.NOT_FOUND

