"""The whole loop in the web console, in real browsers, one person per browser context: a counter
registers a consultation with three needs through the form, with the person's consent for the food
bank; the food bank signs in, finds exactly that referral, shows the person's details by a recorded
request and accepts; the coordinator sees it accepted.

The four services and the console run as real processes on the real broker and database; the
browser is Debian's Chromium. Every page opened is checked with axe-core and photographed.
"""

import asyncio
import re

import pytest

from tsunagu_teststack.console import sign_in_as_partner, sign_in_as_staff
from tsunagu_teststack.people import HANAKO
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED = "tsunagu.referral.requested.v1"


async def test_a_consultation_registered_at_the_counter_is_accepted_by_the_partner_and_seen_by_the_coordinator(
        console_stack, new_page, browsing):
    await console_stack.route()

    # The counter: one form, three needs, consent for the food bank.
    counter = await new_page()
    await sign_in_as_staff(counter, console_stack.console.url, "counter")
    await counter.get_by_label(re.compile(r"^氏名 ")).fill(HANAKO.name)
    await counter.get_by_label("氏名（かな）").fill(HANAKO.name_kana)
    await counter.get_by_label("生年月日").fill(HANAKO.birth_date.isoformat())
    await counter.get_by_label("受け付けた窓口").select_option("self_reliance")
    await counter.get_by_label("緊急度").select_option("high")
    for need in ("食べるものがない", "収入・生活費", "仕事探し・就職"):
        await counter.get_by_role("checkbox", name=need, exact=True).check()
    await counter.get_by_role("radio", name="◎ 食べるものがない").check()
    consent = counter.get_by_role("group", name="同意 1")
    await consent.get_by_label("または連携団体").select_option(label="ざまフードバンク")
    await consent.get_by_label("目的").select_option("referral")
    await consent.get_by_label("同意の方法").select_option("written")
    await browsing.check(counter, "loop-counter-form")
    await counter.get_by_role("button", name="相談を登録する").click()
    await counter.get_by_role("status").get_by_text("相談を登録しました。").wait_for()
    case_id = counter.url.rsplit("/", 1)[-1].split("?")[0]

    requested = await eventually(lambda: asyncio.sleep(0, [r for r in console_stack.receiver.of_type(REQUESTED)
                                                           if r.event["subject"] == case_id]), until=bool)
    referral_id = requested[0].event["data"]["referral_id"]

    # The food bank: exactly its one referral, details only on a recorded request, then acceptance.
    partner = await new_page()
    await sign_in_as_partner(partner, console_stack.console.url, console_stack.registered["partner_id"],
                             console_stack.registered["api_token"])
    await partner.get_by_role("heading", name="受け取った紹介").wait_for()
    rows = partner.get_by_role("table", name="紹介の一覧（1件）").get_by_role("row")
    assert await rows.count() == 2  # the header and the one referral
    await browsing.check(partner, "partner-inbox")

    await partner.get_by_role("link", name=f"紹介 {referral_id[-8:]}").click()
    await partner.get_by_text("個人情報の提供記録").wait_for()
    assert await partner.get_by_text(HANAKO.name).count() == 0, "opening a referral shows no one"
    await browsing.check(partner, "partner-referral")
    await partner.get_by_role("button", name="本人情報を表示する（記録されます）").click()
    await partner.get_by_text(HANAKO.name).wait_for()
    await browsing.check(partner, "partner-referral-details")

    await partner.get_by_role("link", name="配信記録").first.click()
    await partner.get_by_role("table", name="本人情報を表示した記録（新しい順、1件）").wait_for()
    await browsing.check(partner, "partner-deliveries")

    await partner.goto(console_stack.url(f"/partner/referrals/{referral_id}"))
    await partner.get_by_role("button", name="受理する").click()
    await partner.get_by_role("status").get_by_text("回答「受理」を記録しました。").wait_for()
    await browsing.check(partner, "partner-referral-accepted")

    # The coordinator sees it accepted; the counter's case page shows it too.
    coordinator = await new_page()
    await sign_in_as_staff(coordinator, console_stack.console.url, "coordinator")

    async def accepted_rows() -> int:
        await coordinator.goto(console_stack.url("/coordinator/referrals"))
        return await coordinator.get_by_role("row").filter(has_text="ざまフードバンク").filter(
            has_text="受理済み").count()

    assert await eventually(accepted_rows, until=lambda n: n == 1) == 1
    await browsing.check(coordinator, "coordinator-referrals-accepted")

    await counter.reload()
    sheet = counter.get_by_role("table", name="紹介先と対応の状況")
    await sheet.get_by_role("row").filter(has_text="ざまフードバンク").wait_for()
    await browsing.check(counter, "counter-case-accepted")
