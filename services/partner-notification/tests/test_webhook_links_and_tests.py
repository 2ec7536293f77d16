"""The link to a referral's details in its webhook, and what a webhook test shows of the answer,
without infrastructure."""

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import ConsultationRegistered, Envelope, Recipient, ReferralRequested, ReferralRerouted, uuid7
from tsunagu_partners.domain.webhook_tests import EXCERPT_BYTES, answer_excerpt, webhook_test_body
from tsunagu_partners.domain.webhooks import cloudevent_body, signed_headers, with_details_link

PUBLIC = "https://partners.city.example/"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def example(event_type):
    return event_type.model_validate(event_type.model_json_schema()["examples"][0])


def body(event) -> str:
    return cloudevent_body(Envelope(data=event, id=uuid7(), source="/tsunagu/referral"))


def test_a_referral_asked_of_the_partner_links_its_details_on_the_public_address_and_nothing_else_changes():
    ours = uuid7()
    requested = example(ReferralRequested).model_copy(update={"recipient": Recipient.of_partner(ours)})
    queued = body(requested)
    sent = json.loads(with_details_link(queued, ours, PUBLIC))
    assert sent["detailsurl"] == (f"https://partners.city.example/v1/partners/{ours}/referrals/"
                                  f"{requested.referral_id}")
    assert {k: v for k, v in sent.items() if k != "detailsurl"} == json.loads(queued)
    rerouted = example(ReferralRerouted).model_copy(update={"new_recipient": Recipient.of_partner(ours)})
    assert json.loads(with_details_link(body(rerouted), ours, PUBLIC))["detailsurl"].endswith(
        f"/referrals/{rerouted.new_referral_id}")


def test_other_events_another_partners_referral_and_no_public_address_are_sent_as_queued():
    ours = uuid7()
    theirs = body(example(ReferralRequested).model_copy(update={"recipient": Recipient.of_partner(uuid7())}))
    registered = body(example(ConsultationRegistered))
    assert with_details_link(theirs, ours, PUBLIC) == theirs
    assert with_details_link(registered, ours, PUBLIC) == registered
    mine = body(example(ReferralRequested).model_copy(update={"recipient": Recipient.of_partner(ours)}))
    assert with_details_link(mine, ours, None) == mine


def test_the_link_is_a_cloudevents_extension_attribute_the_official_sdk_reads():
    from cloudevents.core.formats.json import JSONFormat

    ours = uuid7()
    requested = example(ReferralRequested).model_copy(update={"recipient": Recipient.of_partner(ours)})
    sent = with_details_link(body(requested), ours, PUBLIC)
    assert JSONFormat().read(None, sent.encode()).get_extension("detailsurl").startswith(PUBLIC)


def test_the_test_event_verifies_like_a_real_webhook_and_names_no_case_or_person():
    partner_id, webhook_id, now = uuid7(), uuid7(), datetime.now(UTC)
    event_body = webhook_test_body(webhook_id, partner_id, now)
    event = Webhook(SECRET).verify(event_body, signed_headers(SECRET, str(webhook_id), event_body, now))
    assert event["type"] == "tsunagu.partners.webhook-test.v1" and event["id"] == str(webhook_id)
    assert set(event["data"]) == {"partner_id", "test", "message_ja", "message_en"}


def test_a_text_answer_is_shown_up_to_a_kibibyte_with_every_secret_blanked_out_and_binary_not_at_all():
    previous = "whsec_" + "PreviousSecretPreviousSecret12"
    raw = f"bad signature for {SECRET}; key {previous.removeprefix('whsec_')}".encode()
    shown = answer_excerpt("text/plain; charset=utf-8", raw, [SECRET, previous])
    assert shown == "bad signature for [secret]; key [secret]"
    assert answer_excerpt("application/problem+json", b'{"title":"x"}', [SECRET]) == '{"title":"x"}'
    assert answer_excerpt("image/png", b"\x89PNG", [SECRET]) is None
    assert answer_excerpt(None, b"no type", [SECRET]) is None
    assert len(answer_excerpt("text/html", b"a" * 5000, [SECRET])) == EXCERPT_BYTES


def test_a_secret_cut_off_where_the_reading_stopped_is_blanked_out_too():
    raw = ("x" * (EXCERPT_BYTES - 10) + SECRET[:20]).encode()
    shown = answer_excerpt("text/plain", raw, [SECRET])
    assert SECRET[:20] not in shown and SECRET.removeprefix("whsec_")[:14] not in shown


class _Registry:
    def __init__(self, row):
        self.row = row

    async def take_webhook_test(self, partner_id, min_interval_s):
        return self.row


class _UnitOfWork:
    def __init__(self, row):
        self.repo = type("Repo", (), {"registry": _Registry(row)})()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def test_a_compressed_answer_is_neither_unpacked_nor_shown():
    import gzip

    import httpx
    from cryptography.fernet import Fernet, MultiFernet

    from tsunagu_partners.handlers.webhook_tests import send_webhook_test

    cipher = MultiFernet([Fernet(Fernet.generate_key())])
    row = {"webhook_url": "https://foodbank.example/hook", "webhook_secret": cipher.encrypt(SECRET.encode()),
           "previous_webhook_secret": None, "webhook_disabled_at": None}
    bomb = gzip.compress(b"a" * 5_000_000)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, stream=httpx.ByteStream(bomb), headers={"content-type": "text/plain", "content-encoding": "gzip"})

    result = await send_webhook_test(lambda: _UnitOfWork(row), uuid7(), cipher=cipher, timeout_s=5,
                                     client=lambda: httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    assert (result.status_code, result.delivered, result.answer_excerpt) == (400, False, None)
    assert result.message_ja.startswith("受信側が 400 を返しました")
