"""People sign in to the web console in a real browser: staff by role (the development sign-in),
partners with their id and API token; a wrong token is refused and nothing else is shown.

The four services and the console run as real processes on the real broker and database; the
browser is Debian's Chromium. Every page opened is checked with axe-core and photographed.
"""

import pytest

from tsunagu_teststack.console import sign_in_as_partner, sign_in_as_staff

pytestmark = pytest.mark.stack


async def test_operations_staff_sign_in_and_see_every_service_ready(console_stack, new_page, browsing):
    page = await new_page()
    await page.goto(console_stack.url("/"))
    assert page.url.endswith("/signin")
    await browsing.check(page, "signin")

    await sign_in_as_staff(page, console_stack.console.url, "ops")

    await page.get_by_role("heading", name="稼働状況").wait_for()
    assert await page.get_by_text("稼働中").count() == 4
    await browsing.check(page, "ops-status")


async def test_a_partner_with_a_wrong_token_is_refused_and_stays_signed_out(console_stack, new_page, browsing):
    page = await new_page()

    await sign_in_as_partner(page, console_stack.console.url, console_stack.registered["partner_id"], "not-the-token")

    await page.get_by_role("alert").get_by_text("連携団体IDまたはAPIトークンが正しくありません。").wait_for()
    await page.goto(console_stack.url("/ops"))
    assert "/signin" in page.url


async def test_a_partner_signs_in_with_its_id_and_api_token(console_stack, new_page):
    page = await new_page()

    await sign_in_as_partner(page, console_stack.console.url, console_stack.registered["partner_id"],
                             console_stack.registered["api_token"])

    assert "/signin" not in page.url
    await page.get_by_role("button", name="サインアウト").click()
    await page.get_by_text("サインアウトしました。").wait_for()


async def test_a_form_without_the_session_csrf_token_changes_nothing(console_stack, new_page):
    page = await new_page()
    await sign_in_as_staff(page, console_stack.console.url, "ops")

    response = await page.request.post(console_stack.url("/signout"), form={"csrf": "forged"})

    assert response.status == 403
    await page.goto(console_stack.url("/ops"))
    await page.get_by_role("heading", name="稼働状況").wait_for()
