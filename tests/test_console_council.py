"""A council member follows up a missed check-in in the web console, in a real browser: the missed
check-in is flagged on the check-ins page, its follow-up is recorded in two taps, and it is in the
support's history; then the figures for the council's meeting.

The four services and the console run as real processes on the real broker and database; the
support reaches its tenancy and its missed check-in through the APIs, as in test_housing_support.
Every page opened is checked with axe-core and photographed.
"""

from datetime import datetime, timedelta

import httpx
import pytest

from tsunagu_contracts.japan import JST
from tsunagu_teststack.console import sign_in_as_staff
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
HOME = {"landlord": "ざま不動産", "address": "座間市緑ケ丘9-9-9 101", "moved_in_on": "2026-11-01"}


async def a_support_whose_visit_was_missed(stack, consultation) -> str:
    """A consultation with a housing need, walked to its tenancy, with one visit that falls due at
    once and passes without anyone recording it."""
    async def call(service, method: str, path: str, role: str, **kw) -> httpx.Response:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            return await client.request(method, path, headers=stack.auth(role), **kw)

    registered = await call(stack.intake, "POST", "/v1/consultations", "counter", json=consultation())
    assert registered.status_code == 201, registered.text
    case_id = registered.json()["case_id"]

    async def support_of_case():
        listed = (await call(stack.housing, "GET", "/v1/supports", "council")).json()["items"]
        return [s["support_id"] for s in listed if s["case_id"] == case_id]
    support_id = (await eventually(support_of_case, until=bool))[0]
    for stage, body in (("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME})):
        moved = await call(stack.housing, "POST", f"/v1/supports/{support_id}/stage", "council",
                           json={"to_stage": stage, **body})
        assert moved.status_code == 200, moved.text
    first = (datetime.now(JST) + timedelta(seconds=2)).replace(microsecond=0)
    scheduled = await call(stack.housing, "PUT", f"/v1/supports/{support_id}/check-in-schedule", "council", json={
        "rules": [{"kind": "visit", "grace_minutes": 0,
                   "rrule": f"DTSTART;TZID=Asia/Tokyo:{first:%Y%m%dT%H%M%S}\nRRULE:FREQ=SECONDLY;COUNT=1"}]})
    assert scheduled.status_code == 200, scheduled.text

    async def missed():
        items = (await call(stack.housing, "GET", "/v1/check-ins?missed=true", "council")).json()["items"]
        return [c for c in items if c["support_id"] == support_id]
    await eventually(missed, until=bool)
    return support_id


async def test_a_council_member_records_the_follow_up_of_a_missed_visit_in_two_taps_and_reads_the_overview(
        console_stack, consultation, new_page, browsing):
    support_id = await a_support_whose_visit_was_missed(console_stack, consultation)
    short = f"支援 {support_id[-8:]}"
    page = await new_page()

    await sign_in_as_staff(page, console_stack.console.url, "council")
    await page.get_by_role("heading", name="居住支援", exact=True).wait_for()
    moved_in = page.get_by_role("table", name="「入居」の段階にある支援")
    await moved_in.get_by_role("link", name=short).wait_for()
    await browsing.check(page, "council-supports")

    await page.get_by_role("link", name="構成員", exact=True).click()
    await page.get_by_label("名称（団体・課の名前。個人名は入れないでください）").fill("高齢者関係課")
    await page.get_by_label("庁内の窓口の場合：課").select_option("elderly")
    await page.get_by_role("checkbox", name="見守り・安否確認").check()
    await page.get_by_role("button", name="構成員を登録する").click()
    await page.get_by_text("構成員を登録しました。").wait_for()
    await page.get_by_role("row", name="高齢者関係課").wait_for()
    await browsing.check(page, "council-members")

    await page.get_by_role("link", name="見守り", exact=True).click()
    missed_row = page.get_by_role("row").filter(has=page.get_by_role("link", name=short))
    await missed_row.get_by_text("未実施").wait_for()
    await browsing.check(page, "council-check-ins-missed")
    await missed_row.get_by_role("button", name="会えた（問題なし）").click()
    await page.get_by_role("status").get_by_text("見守り（問題なし）を記録しました。").wait_for()
    assert await page.get_by_role("link", name=short).count() == 0, "answered: nothing left to follow up"
    await page.get_by_text("未実施の見守りはありません。").wait_for()
    await browsing.check(page, "council-check-ins-followed-up")

    await page.goto(console_stack.url(f"/council/supports/{support_id}"))
    history = page.get_by_role("table", name="見守りの記録")
    await history.get_by_role("row").filter(has_text="問題なし").filter(has_text="訪問").wait_for()
    await history.get_by_role("row").filter(has_text="未実施").wait_for()
    await browsing.check(page, "council-support")

    await page.get_by_role("link", name="協議会への報告").click()
    await page.get_by_role("heading", name="協議会への報告").wait_for()
    by_stage = page.get_by_role("table", name="段階ごとの支援の件数（現在）")
    moved_in_row = by_stage.get_by_role("row").filter(has=page.get_by_role("rowheader", name="入居", exact=True))
    assert "1件" in await moved_in_row.inner_text()
    assert await page.get_by_label("対象の月").input_value() == datetime.now(JST).strftime("%Y-%m")
    await browsing.check(page, "council-overview")
