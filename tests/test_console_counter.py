"""A counter registers a consultation in the web console, in a real browser, and follows it on the
case page: the needs it recorded, and the つなぐシート's referrals as referral opens them from
intake's events on the real broker.

Every page opened is checked with axe-core and photographed.
"""

import asyncio
import re

import httpx
import pytest

from tsunagu_teststack.console import sign_in_as_staff

pytestmark = pytest.mark.stack

RELOADS = 120
"""Reloads of the case page while the referrals travel through Kafka (a bound, not a timing)."""


async def test_a_counter_registers_three_needs_with_the_chart_and_sees_them_referred_on_the_case_page(
        console_stack, new_page, browsing):
    page = await new_page()
    await sign_in_as_staff(page, console_stack.console.url, "counter")
    await page.get_by_role("heading", name="相談を受け付ける", exact=True).wait_for()
    await browsing.check(page, "counter-consultation-new")

    await page.get_by_label(re.compile(r"^氏名 ")).fill("座間 花子")
    await page.get_by_label("氏名（かな）").fill("ざま はなこ")
    await page.get_by_label("生年月日").fill("1968-04-02")
    await page.get_by_label("受け付けた窓口").select_option("tax")
    await page.get_by_label("緊急度").select_option("high")
    await page.get_by_role("checkbox", name="家賃を滞納している").check()
    await page.get_by_role("button", name="気づきから課題を提案").click()
    suggestions = page.get_by_role("region", name="チャートが提案する課題")
    await suggestions.get_by_text("家賃やローンの支払い").wait_for()
    await browsing.check(page, "counter-consultation-suggested")

    for need in ("家賃やローンの支払い", "住まい", "食べるものがない"):
        await page.get_by_role("checkbox", name=need, exact=True).check()
    await page.get_by_role("radio", name="◎ 家賃やローンの支払い").check()
    consent = page.get_by_role("group", name="同意 1")
    await consent.get_by_label("相手（庁内の窓口）").select_option("housing")
    await consent.get_by_label("目的").select_option("housing_support")
    await consent.get_by_label("同意の方法").select_option("written")
    await page.get_by_label("相談の内容").fill("納税相談の際、家賃も3か月滞納していると話された。")
    await page.get_by_role("button", name="相談を登録する").click()

    await page.get_by_role("heading", name="相談の状況").wait_for()
    await page.get_by_role("status").get_by_text("相談を登録しました。").wait_for()
    needs = page.get_by_role("list").filter(has_text="◎ 家賃やローンの支払い")
    assert await needs.get_by_role("listitem").all_inner_texts() == ["◎ 家賃やローンの支払い", "住まい", "食べるものがない"]
    assert "/signin" not in page.url and "person" not in page.url

    sheet = page.get_by_role("table", name="紹介先と対応の状況")
    for _ in range(RELOADS):
        if await sheet.count() and await sheet.locator("tbody th").count() == 3:
            break
        await asyncio.sleep(0.5)
        await page.reload()
    assert sorted(await sheet.locator("tbody th").all_inner_texts()) == sorted(
        ["◎ 家賃やローンの支払い", "住まい", "食べるものがない"])
    await sheet.get_by_role("cell", name="住宅課").wait_for()
    await browsing.check(page, "counter-case")

    await page.get_by_role("link", name="フォローアップ").click()
    await page.get_by_role("heading", name="フォローアップ", exact=True).wait_for()
    await browsing.check(page, "counter-follow-ups")


async def test_a_counter_told_the_person_is_already_known_adds_the_consultation_to_that_persons_case(
        console_stack, new_page, browsing, consultation):
    async with httpx.AsyncClient(base_url=console_stack.intake.url, timeout=30) as client:
        first = await client.post("/v1/consultations", headers=console_stack.auth("counter"), json=consultation())
    assert first.status_code == 201, first.text
    known = first.json()
    page = await new_page()
    await sign_in_as_staff(page, console_stack.console.url, "counter")

    await page.get_by_label(re.compile(r"^氏名 ")).fill("座間 花子")
    await page.get_by_label("氏名（かな）").fill("ザマ ハナコ")
    await page.get_by_label("生年月日").fill("1968-04-02")
    await page.get_by_label("受け付けた窓口").select_option("living_support")
    await page.get_by_label("緊急度").select_option("immediate")
    await page.get_by_role("checkbox", name="食べるものがない", exact=True).check()
    await page.get_by_role("radio", name="◎ 食べるものがない").check()
    await page.get_by_role("button", name="相談を登録する").click()

    decision = page.get_by_role("group", name=re.compile("^同一人物の確認"))
    await decision.wait_for()
    assert "座間" not in await decision.inner_text(), "only the pseudonymous id of the known person"
    await browsing.check(page, "counter-consultation-possible-duplicate")
    await decision.get_by_role("radio", name=re.compile(known["person_ref"])).check()
    await page.get_by_role("button", name="相談を登録する").click()

    await page.get_by_role("heading", name="相談の状況").wait_for()
    assert page.url.endswith(f"/counter/cases/{known['case_id']}")
    needs = page.get_by_role("list").filter(has_text="食べるものがない")
    assert "◎ 家賃やローンの支払い" in await needs.inner_text()

    consent = page.get_by_role("table", name="同意の記録（相手と目的ごと）")
    await consent.get_by_role("button", name=re.compile("^住宅課への同意")).click()
    await page.get_by_role("status").get_by_text("同意の撤回を記録しました。").wait_for()
    await consent.get_by_text("撤回済み").wait_for()
    await browsing.check(page, "counter-case-consent-withdrawn")
