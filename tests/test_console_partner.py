"""A partner works its referrals in the web console: it finds the one addressed to it in its inbox,
shows the person's details only by a recorded request, accepts, and sees the provision in its
record; another partner sees none of it.

The four services and the console run as real processes on the real broker and database; the
browser is Debian's Chromium. Every page opened is checked with axe-core and photographed.
"""

import asyncio

import httpx
import pytest

from tsunagu_teststack.console import sign_in_as_partner
from tsunagu_teststack.people import HANAKO
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED = "tsunagu.referral.requested.v1"


async def a_consultation_referred_to_the_food_bank(stack) -> dict:
    """A consultation about food with the person's consent to the food bank: the request the food bank's
    webhook received (ids and codes only)."""
    await stack.route()
    async with httpx.AsyncClient(base_url=stack.intake.url, timeout=30) as client:
        registered = await client.post("/v1/consultations", headers=stack.auth("counter"), json={
            "person": HANAKO.as_request(), "counter": "self_reliance", "channel": "counter", "urgency": "high",
            "needs": ["no_food"], "primary_need": "no_food",
            "consents": [{"recipient": {"kind": "partner", "partner_id": stack.registered["partner_id"]},
                          "purpose": "referral", "method": "written"}]})
    assert registered.status_code == 201, registered.text
    received = await eventually(lambda: asyncio.sleep(0, stack.receiver.of_type(REQUESTED)), until=bool)
    return received[0].event["data"]


async def referral_status(stack, case_id: str, referral_id: str) -> str:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        sheet = await client.get(f"/v1/cases/{case_id}/referrals", headers=stack.auth("coordinator"))
    assert sheet.status_code == 200, sheet.text
    return next(r["status"] for r in sheet.json()["referrals"] if r["referral_id"] == referral_id)


async def test_a_partner_shows_the_persons_details_by_a_recorded_request_and_accepts_its_referral(
        console_stack, new_page, browsing):
    request = await a_consultation_referred_to_the_food_bank(console_stack)
    page = await new_page()
    await sign_in_as_partner(page, console_stack.console.url, console_stack.registered["partner_id"],
                             console_stack.registered["api_token"])

    await page.get_by_role("heading", name="受け取った紹介").wait_for()
    rows = page.get_by_role("table", name="紹介の一覧（1件）").get_by_role("row")
    assert await rows.count() == 2  # the header and the one referral
    assert await page.get_by_text("回答待ち", exact=True).count() == 1
    await browsing.check(page, "partner-inbox")

    await page.get_by_role("link", name=f"紹介 {request['referral_id'][-8:]}").click()
    await page.get_by_text("個人情報の提供記録").wait_for()
    assert await page.get_by_text(HANAKO.name).count() == 0
    await browsing.check(page, "partner-referral")

    await page.get_by_role("button", name="本人情報を表示する（記録されます）").click()
    await page.get_by_text(HANAKO.name).wait_for()
    await browsing.check(page, "partner-referral-details")

    await page.get_by_role("link", name="配信記録").first.click()
    provisions = page.get_by_role("table", name="本人情報を表示した記録（新しい順、1件）")
    await provisions.wait_for()
    await browsing.check(page, "partner-deliveries")

    await page.goto(console_stack.url(f"/partner/referrals/{request['referral_id']}"))
    await page.get_by_role("button", name="受理する").click()
    await page.get_by_role("status").get_by_text("回答「受理」を記録しました。").wait_for()
    await browsing.check(page, "partner-referral-accepted")

    accepted = await eventually(lambda: referral_status(console_stack, request["case_id"], request["referral_id"]),
                                until=lambda status: status == "accepted")
    assert accepted == "accepted"


async def test_another_partner_sees_an_empty_inbox_and_is_refused_the_first_partners_referral(
        console_stack, new_page, browsing):
    request = await a_consultation_referred_to_the_food_bank(console_stack)
    async with httpx.AsyncClient(base_url=console_stack.partners.url, timeout=30) as client:
        other = await client.post("/v1/partners", headers=console_stack.auth("coordinator"), json={
            "name": "居住支援法人 すまいる", "need_categories": ["housing"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@sumairu.example"},
            "webhook_url": "http://127.0.0.1:9/unused"})
    assert other.status_code == 201, other.text
    page = await new_page()

    await sign_in_as_partner(page, console_stack.console.url, other.json()["partner_id"], other.json()["api_token"])

    await page.get_by_text("この団体宛ての紹介はまだありません。").wait_for()
    await browsing.check(page, "partner-inbox-empty")
    response = await page.goto(console_stack.url(f"/partner/referrals/{request['referral_id']}"))
    assert response.status == 404
    await page.get_by_role("heading", name="この団体宛ての紹介が見つかりません。").wait_for()
    assert await page.get_by_text(HANAKO.name).count() == 0
    await browsing.check(page, "partner-referral-refused")
