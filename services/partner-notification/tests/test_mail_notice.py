"""The mail notice's content, how SMTP failures are told apart, the SMTP settings, and the sink's page."""

from __future__ import annotations

import json
from uuid import UUID

import aiosmtplib
import pytest
from pydantic import ValidationError

from tsunagu_contracts import Envelope, ReferralRequested, uuid7
from tsunagu_partners.bootstrap import PartnerSettings
from tsunagu_partners.domain.commands import Contact
from tsunagu_partners.domain.mail import mailed_referral, message, referral_notice
from tsunagu_partners.domain.webhooks import cloudevent_body
from tsunagu_partners.handlers.mail import smtp_failure
from tsunagu_teststack.mailsink import MailSink

PARTNER = UUID("0192f0c1-7a2e-7cc3-9a41-00000000aaaa")


def requested_body(partner_id: UUID = PARTNER) -> tuple[str, str]:
    example = ReferralRequested.model_json_schema()["examples"][0]
    event = ReferralRequested.model_validate({
        **example, "need": "no_food", "accept_by": "2026-12-02T08:00:00+00:00",
        "recipient": {"kind": "partner", "partner_id": str(partner_id)}})
    return cloudevent_body(Envelope(data=event, id=uuid7(), source="/tsunagu/referral")), str(event.referral_id)


def test_the_notice_gives_the_need_label_the_deadline_in_japan_time_and_the_link_to_the_console():
    body, referral_id = requested_body()
    notice = referral_notice(body, "https://console.city.example/")

    assert notice.subject.startswith("【つなぐ】新しい紹介があります（食べるものがない）")
    assert "受理の期限: 2026年12月2日（水）17:00（日本時間）" in notice.text
    assert f"紹介ID: {referral_id}" in notice.text
    assert f"https://console.city.example/partner/referrals/{referral_id}" in notice.text
    assert notice.text.index("紹介ID") < notice.text.index("A new referral"), "Japanese first"


def test_the_notice_is_built_from_codes_only_so_no_field_of_the_event_beyond_them_can_reach_it():
    body, _ = requested_body()
    event = json.loads(body)
    event["data"]["note"] = "座間 花子 046-000-0000"  # a field no notice reads
    assert "花子" not in referral_notice(json.dumps(event), "http://c").text


def test_only_a_request_addressed_to_the_partner_is_mailed():
    body, referral_id = requested_body()
    assert mailed_referral(body, PARTNER) == UUID(referral_id)
    assert mailed_referral(body, uuid7()) is None
    other = json.loads(body) | {"type": "tsunagu.referral.accepted.v1"}
    assert mailed_referral(json.dumps(other), PARTNER) is None


def test_every_attempt_of_one_delivery_carries_the_same_message_id():
    body, _ = requested_body()
    delivery = uuid7()
    first, again = (message(referral_notice(body, "http://c"), sender="no-reply@city.example", to="desk@npo.example",
                            delivery_id=delivery) for _ in range(2))
    assert first["Message-ID"] == again["Message-ID"] == f"<{delivery}@city.example>"


def test_smtp_failures_are_told_apart_by_their_code_and_never_carry_the_servers_text():
    later = aiosmtplib.SMTPDataError(451, "4.3.0 desk@npo.example mailbox busy")
    never = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "desk@npo.example")])
    assert smtp_failure(later) == (451, "SMTPDataError", False)
    assert smtp_failure(never) == (550, "SMTPRecipientRefused", True)
    assert smtp_failure(ConnectionRefusedError()) == (None, "ConnectionRefusedError", False)


def test_an_smtp_user_without_a_password_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("TSUNAGU_PARTNERS_SMTP_USERNAME", "tsunagu")
    with pytest.raises(ValidationError, match="together"):
        PartnerSettings()


def test_the_sinks_page_escapes_what_it_received():
    sink = MailSink(port=1)
    sink._receive("a@b.example", ("desk@npo.example",),
                  b"Subject: <script>x</script>\r\nContent-Type: text/plain\r\n\r\n<b>body</b>\r\n")
    page = sink.page()
    assert "&lt;script&gt;" in page and "<script>" not in page and "&lt;b&gt;body" in page
    assert "受信したメール" in page


@pytest.mark.parametrize("address", ["everyone,desk@npo.example", "desk;all@npo.example", "a<desk@npo.example",
                                     "desk(x)@npo.example", '"a b"@npo.example', "desk@npo.example\r\nBcc: x@y.z"])
def test_a_contact_address_a_mail_header_would_read_as_more_than_one_address_is_refused(address):
    with pytest.raises(ValidationError, match="email"):
        Contact(department="事務局", email=address)


@pytest.mark.parametrize("address", ["desk@npo.example", "o'brien+tsunagu@mail.npo.example", "a.b-c_d@npo.example"])
def test_ordinary_contact_addresses_are_accepted(address):
    assert Contact(department="事務局", email=address).email == address
