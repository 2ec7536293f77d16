"""A partner without a webhook hears of each referral by e-mail, and the mail names nobody.

intake, referral and partner-notification run as real processes on the real broker and database;
the mail goes over real SMTP to a loopback sink (tsunagu_teststack.mailsink).
"""

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tsunagu_teststack.people import HANAKO
from tsunagu_teststack.pii import PersonalDataScanner, report
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
DESK = "jimukyoku@kodomo-shokudo.example"


@pytest.fixture
async def mailing_stack(service_process, mail_sink):
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification", extra_env={
            **mail_sink.partner_env(), "TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url,
            "TSUNAGU_PARTNERS_RETRY_SCALE": "0.01", "TSUNAGU_PARTNERS_CONSOLE_URL": "http://console.example"}))
    return intake, referral, partners


async def a_partner_without_a_webhook_referred_for_no_food(stack, auth_headers) -> tuple[str, Callable]:
    """ざまこども食堂, registered with an e-mail address only and first for no_food; and `consult()`,
    which registers a consultation of the sample person with consent to it."""
    intake, referral, partners = stack
    async with httpx.AsyncClient(timeout=30) as client:
        registered = await client.post(f"{partners.url}/v1/partners", headers=auth_headers("coordinator"), json={
            "name": "ざまこども食堂", "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "事務局", "email": DESK}})
        assert registered.status_code == 201, registered.text
        partner_id = registered.json()["partner_id"]
        routed = await client.put(f"{referral.url}/v1/routing/no_food", headers=auth_headers("coordinator"),
                                  json={"candidates": [{"kind": "partner", "partner_id": partner_id}]})
        assert routed.status_code == 200, routed.text

    async def consult() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            consulted = await client.post(f"{intake.url}/v1/consultations", headers=auth_headers("counter"), json={
                "person": HANAKO.as_request(), "counter": "self_reliance", "channel": "counter", "urgency": "high",
                "needs": ["no_food"], "primary_need": "no_food", "notes": "冷蔵庫が空だと話された。",
                "consents": [{"recipient": {"kind": "partner", "partner_id": partner_id}, "purpose": "referral",
                              "method": "written"}]})
        assert consulted.status_code == 201, consulted.text
    return partner_id, consult


async def delivery_log(partners, partner_id: str, auth_headers) -> list[dict]:
    async with httpx.AsyncClient(timeout=30) as client:
        log = await client.get(f"{partners.url}/v1/partners/{partner_id}/deliveries", headers=auth_headers("coordinator"))
    assert log.status_code == 200, log.text
    return log.json()


async def test_a_partner_without_a_webhook_gets_one_mail_per_referral_with_a_link_and_no_personal_data(
        mailing_stack, mail_sink, auth_headers):
    partners = mailing_stack[2]
    partner_id, consult = await a_partner_without_a_webhook_referred_for_no_food(mailing_stack, auth_headers)
    await consult()
    [delivery] = await eventually(lambda: delivery_log(partners, partner_id, auth_headers),
                                  until=lambda rows: [r["status"] for r in rows] == ["delivered"])

    assert delivery["channel"] == "email" and delivery["referral_id"]
    [mail] = mail_sink.to(DESK)
    assert f"http://console.example/partner/referrals/{delivery['referral_id']}" in mail.body
    assert "食べるものがない" in mail.subject and "食べるものがない" in mail.body
    assert "冷蔵庫" not in mail.text, "no free text"
    hits = PersonalDataScanner().scan("the mail notice", mail.text)
    assert not hits, report(hits)
    assert len(mail_sink.mails) == 1


async def test_a_mail_the_server_defers_arrives_on_retry_and_one_it_refuses_for_good_is_a_dead_letter(
        mailing_stack, mail_sink, auth_headers):
    partners = mailing_stack[2]
    partner_id, consult = await a_partner_without_a_webhook_referred_for_no_food(mailing_stack, auth_headers)

    mail_sink.refuse(451)
    await consult()
    [deferred] = await eventually(lambda: delivery_log(partners, partner_id, auth_headers),
                                  until=lambda rows: [r["status"] for r in rows] == ["delivered"])
    assert (deferred["channel"], deferred["attempts"], deferred["last_status"]) == ("email", 2, 250)
    assert mail_sink.refused == 1 and len(mail_sink.to(DESK)) == 1

    mail_sink.refuse(550, times=10)
    await consult()
    log = await eventually(lambda: delivery_log(partners, partner_id, auth_headers),
                           until=lambda rows: "dead" in [r["status"] for r in rows])
    [refused] = [r for r in log if r["status"] == "dead"]
    assert (refused["channel"], refused["attempts"], refused["last_status"], refused["last_error"]) == (
        "email", 1, 550, "SMTPDataError")
    assert len(mail_sink.to(DESK)) == 1, "nothing more arrived"
