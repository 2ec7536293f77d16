"""Another partner sees none of a partner's referrals in the web console (the partner's own work on
its referral is the whole loop's: tests/test_console_whole_loop.py).

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
