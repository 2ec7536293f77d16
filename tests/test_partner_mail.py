"""A partner without a webhook hears of each referral by e-mail, and the mail names nobody.

intake, referral and partner-notification run as real processes on the real broker and database;
the mail goes over real SMTP to a loopback sink (tsunagu_teststack.mailsink).
"""

import asyncio

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


async def test_a_partner_without_a_webhook_gets_one_mail_per_referral_with_a_link_and_no_personal_data(
        mailing_stack, mail_sink, auth_headers):
    intake, referral, partners = mailing_stack
    async with httpx.AsyncClient(timeout=30) as client:
        registered = await client.post(f"{partners.url}/v1/partners", headers=auth_headers("coordinator"), json={
            "name": "ざまこども食堂", "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "事務局", "email": DESK}})
        assert registered.status_code == 201, registered.text
        partner_id = registered.json()["partner_id"]
        routed = await client.put(f"{referral.url}/v1/routing/no_food", headers=auth_headers("coordinator"),
                                  json={"candidates": [{"kind": "partner", "partner_id": partner_id}]})
        assert routed.status_code == 200, routed.text
        consulted = await client.post(f"{intake.url}/v1/consultations", headers=auth_headers("counter"), json={
            "person": HANAKO.as_request(), "counter": "self_reliance", "channel": "counter", "urgency": "high",
            "needs": ["no_food"], "primary_need": "no_food", "notes": "冷蔵庫が空だと話された。",
            "consents": [{"recipient": {"kind": "partner", "partner_id": partner_id}, "purpose": "referral",
                          "method": "written"}]})
        assert consulted.status_code == 201, consulted.text

        async def delivered() -> list[dict]:
            log = await client.get(f"{partners.url}/v1/partners/{partner_id}/deliveries",
                                   headers=auth_headers("coordinator"))
            return [d for d in log.json() if d["status"] == "delivered"]
        [delivery] = await eventually(delivered, until=lambda rows: len(rows) == 1)

    assert delivery["channel"] == "email" and delivery["referral_id"]
    [mail] = mail_sink.to(DESK)
    assert f"http://console.example/partner/referrals/{delivery['referral_id']}" in mail.body
    assert "食べるものがない" in mail.subject and "食べるものがない" in mail.body
    assert "冷蔵庫" not in mail.text
    hits = PersonalDataScanner().scan("the mail notice", mail.text)
    assert not hits, report(hits)
    assert len(mail_sink.mails) == 1
