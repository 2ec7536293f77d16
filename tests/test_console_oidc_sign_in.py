"""A counter signs in to the web console at the city's identity provider, in a real browser, and
sees the consultation form, then signs out of the console and the provider: authorization code flow with PKCE against the test identity provider,
whose access token intake and partner-notification (real processes) accept as the counter's.

Every page of the console opened is checked with axe-core and photographed.
"""

import pytest

from tsunagu_teststack.oidc_provider import IdentityProviderServer

pytestmark = pytest.mark.stack


@pytest.fixture
async def oidc_console(food_bank, service_process):
    async with IdentityProviderServer() as idp:
        yield await service_process("console", extra_env=idp.console_env(), urls={
            "intake": food_bank.intake.url, "referral": food_bank.referral.url, "partners": food_bank.partners.url})


async def test_a_counter_signs_in_at_the_citys_identity_provider_sees_the_consultation_form_and_signs_out(
        oidc_console, new_page, browsing):
    page = await new_page()
    await page.goto(f"{oidc_console.url}/counter/consultations/new")
    await browsing.check(page, "signin-oidc")

    await page.get_by_role("button", name="市の認証基盤でサインイン").click()
    await page.get_by_role("heading", name="テスト用認証基盤").wait_for()
    await page.get_by_label("役割").select_option("counter")
    await page.get_by_role("button", name="サインイン", exact=True).click()

    await page.get_by_role("heading", name="相談を受け付ける", exact=True).wait_for()
    assert page.url == f"{oidc_console.url}/counter/consultations/new"
    assert await page.get_by_role("button", name="サインアウト").count() == 1
    await browsing.check(page, "counter-consultation-new-after-oidc")

    await page.get_by_role("button", name="サインアウト").click()
    await page.get_by_role("heading", name="サインイン", exact=True).wait_for()
    await page.goto(f"{oidc_console.url}/counter/consultations/new")
    assert "/signin" in page.url
