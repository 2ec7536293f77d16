"""A coordinator works in the web console in a real browser: registers a partner and is shown its
token once, sets the routing for a need, and sees a referral the food bank accepted through its own
API marked accepted in the referrals list.

The four services and the console run as real processes on the real broker and database; the
browser is Debian's Chromium. Every page opened is checked with axe-core and photographed.
"""

import asyncio

import httpx
import pytest

from tsunagu_console.domain.labels import label
from tsunagu_teststack.console import sign_in_as_staff
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED = "tsunagu.referral.requested.v1"
NO_FOOD = label("NeedCategory", "no_food")


async def food_banks_webhook_url(console_stack) -> str:
    async with httpx.AsyncClient(base_url=console_stack.partners.url, timeout=30) as client:
        response = await client.get(f"/v1/partners/{console_stack.registered['partner_id']}",
                                    headers=console_stack.auth("coordinator"))
    assert response.status_code == 200, response.text
    return response.json()["webhook_url"]


async def a_referral_to_the_food_bank(console_stack) -> str:
    """A consultation with the food bank's consent, referred to it: the referral's id, once the
    food bank's webhook received it."""
    partner_id = console_stack.registered["partner_id"]
    async with httpx.AsyncClient(base_url=console_stack.intake.url, timeout=30) as client:
        response = await client.post("/v1/consultations", headers=console_stack.auth("counter"), json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": ["no_food"],
            "primary_need": "no_food", "consents": [{"recipient": {"kind": "partner", "partner_id": partner_id},
                                                     "purpose": "referral", "method": "written"}]})
    assert response.status_code == 201, response.text
    case_id = response.json()["case_id"]
    requested = await eventually(lambda: asyncio.sleep(0, [r for r in console_stack.receiver.of_type(REQUESTED)
                                                           if r.event["subject"] == case_id]), until=bool)
    return requested[0].event["data"]["referral_id"]


async def the_food_bank_accepts(console_stack, referral_id: str) -> None:
    partner_id, token = console_stack.registered["partner_id"], console_stack.registered["api_token"]
    async with httpx.AsyncClient(base_url=console_stack.partners.url, timeout=30) as client:
        response = await client.post(f"/v1/partners/{partner_id}/referrals/{referral_id}/responses",
                                     json={"response": "accepted"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text


async def test_a_coordinator_registers_a_partner_routes_a_need_and_sees_the_food_banks_acceptance(
        console_stack, new_page, browsing):
    page = await new_page()
    await sign_in_as_staff(page, console_stack.console.url, "coordinator")
    await page.get_by_role("heading", name="紹介の一覧").wait_for()
    await browsing.check(page, "coordinator-referrals-empty")

    # A second partner, registered through the form: its token is shown this once.
    await page.get_by_role("link", name="連携団体", exact=True).click()
    await page.get_by_role("heading", name="連携団体", exact=True).wait_for()
    await browsing.check(page, "coordinator-partners")
    await page.get_by_role("link", name="連携団体を登録する").click()
    await page.get_by_role("heading", name="連携団体を登録する").wait_for()
    await browsing.check(page, "coordinator-partner-new")
    await page.get_by_label("団体の名称").fill("あさひ子ども食堂")
    await page.get_by_role("group", name="対応する課題").get_by_label(NO_FOOD).check()
    await page.get_by_label("地域（全国地方公共団体コード").fill("142166")
    await page.get_by_label("部署・窓口").fill("事務局")
    await page.get_by_label("メールアドレス").fill("office@asahi.example")
    await page.get_by_label("Webhook URL（https）").fill(await food_banks_webhook_url(console_stack))
    await page.get_by_role("button", name="登録する").click()

    await page.get_by_role("heading", name="連携団体を登録しました").wait_for()
    await page.get_by_text("今回だけ表示されます。").first.wait_for()
    token = (await page.locator("dd code").first.inner_text()).strip()
    assert token.startswith("tzp_")
    await browsing.check(page, "coordinator-partner-registered")

    await page.get_by_role("link", name="連携団体のページへ").click()
    await page.get_by_role("heading", name="あさひ子ども食堂").wait_for()
    assert token not in await page.content(), "the token is shown once, on the registration's answer only"
    await browsing.check(page, "coordinator-partner")

    # The routing for "no food": the food bank first, the new partner second.
    await page.get_by_role("link", name="振り分け表").click()
    await page.get_by_role("heading", name="振り分け表").wait_for()
    await browsing.check(page, "coordinator-routing")
    no_food = page.get_by_role("group", name=f"「{NO_FOOD}」の候補を設定する")
    await no_food.get_by_label("第1候補").select_option(label="ざまフードバンク")
    await no_food.get_by_label("第2候補").select_option(label="あさひ子ども食堂")
    await no_food.get_by_role("button").click()
    await page.get_by_role("status").get_by_text(f"「{NO_FOOD}」の振り分けを記録しました。").wait_for()
    routed = page.get_by_role("table", name=f"「{NO_FOOD}」の候補と実績")
    await routed.get_by_role("row").filter(has_text="第2候補").filter(has_text="あさひ子ども食堂").wait_for()

    # A referral to the food bank, accepted by the food bank through its own API.
    referral_id = await a_referral_to_the_food_bank(console_stack)
    await the_food_bank_accepts(console_stack, referral_id)

    async def accepted_rows() -> int:
        await page.goto(console_stack.url("/coordinator/referrals"))
        return await page.get_by_role("row").filter(has_text="ざまフードバンク").filter(has_text="受理済み").count()

    assert await eventually(accepted_rows, until=lambda n: n == 1) == 1
    await browsing.check(page, "coordinator-referrals-accepted")

    await page.get_by_role("link", name="集計").click()
    await page.get_by_role("heading", name="集計", exact=True).wait_for()
    await page.get_by_role("table", name="紹介先ごとの受理と回答").get_by_role("row").filter(
        has_text="ざまフードバンク").wait_for()
    await browsing.check(page, "coordinator-reports")
