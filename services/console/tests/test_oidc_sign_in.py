"""Staff sign in at the city's identity provider (authorization code flow with PKCE): what the console
checks on the way back, and that nobody is signed in when any check fails.

The provider is the test provider of tsunagu_teststack, in-process: the console reaches it through an
ASGI transport, the test plays the browser at its sign-in form.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.bootstrap import ConsoleSettings, build_app, check_settings
from tsunagu_servicehost.auth import new_signing_key
from tsunagu_teststack.oidc_provider import CLIENT_ID, CLIENT_SECRET, TestIdentityProvider
from tsunagu_teststack.tokens import STAFF_AUDIENCE, STAFF_ISSUER

IDP = "http://idp.test"
NO_ROLE = "役割（相談窓口・コーディネーター・居住支援協議会・運用担当）が割り当てられていません"
REFUSED = "サインインできませんでした。"


@pytest.fixture
def provider() -> TestIdentityProvider:
    return TestIdentityProvider(issuer=IDP)


def oidc_console(services, provider: TestIdentityProvider, **changes) -> TestClient:
    settings = ConsoleSettings(**{
        "console_session_keys": Fernet.generate_key().decode(), "console_secure_cookies": False,
        "staff_issuer": STAFF_ISSUER, "staff_audience": STAFF_AUDIENCE, "staff_algorithms": ["EdDSA"],
        "console_oidc_issuer": IDP, "console_oidc_client_id": CLIENT_ID, "console_oidc_client_secret": CLIENT_SECRET,
        "console_oidc_redirect_url": "http://127.0.0.1/signin/oidc/callback", **changes})
    return TestClient(build_app(settings, transport=httpx.MockTransport(services.handle),
                                oidc_transport=httpx.ASGITransport(app=provider.app)), base_url="http://127.0.0.1")


@pytest.fixture
def console(services, provider):
    with oidc_console(services, provider) as client:
        yield client


@pytest.fixture
def browser_at_provider(provider):
    return TestClient(provider.app, base_url=IDP)


def start_sign_in(console, csrf_of, next_path: str = "") -> dict:
    """Press 「市の認証基盤でサインイン」: the authorization request's parameters, as sent to the provider."""
    sent = console.post("/signin/oidc", follow_redirects=False,
                        data={"csrf": csrf_of(console.get("/signin").text), "next": next_path})
    assert sent.status_code == 303, sent.text
    location = urlsplit(sent.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{IDP}/authorize"
    return dict(parse_qsl(location.query))


def sign_in_at_provider(browser_at_provider, request: dict, role: str = "counter") -> str:
    """The person signs in at the provider's form; the callback path and query the provider sends them to."""
    back = browser_at_provider.post("/authorize", data={**request, "role": role, "subject": "staff-42"},
                                    follow_redirects=False)
    location = urlsplit(back.headers["location"])
    return f"{location.path}?{location.query}"


def sign_in(console, browser_at_provider, csrf_of, role: str = "counter") -> httpx.Response:
    return console.get(sign_in_at_provider(browser_at_provider, start_sign_in(console, csrf_of), role))


def test_the_sign_in_page_offers_the_citys_identity_provider_only_when_one_is_set(console, services):
    page = console.get("/signin").text
    assert 'action="/signin/oidc"' in page and "市の認証基盤でサインイン</button>" in page

    with oidc_console(services, TestIdentityProvider(issuer=IDP), console_oidc_issuer="") as without:
        assert 'action="/signin/oidc"' not in without.get("/signin").text


def test_the_authorization_request_uses_pkce_s256_a_state_and_a_nonce(console, csrf_of):
    request = start_sign_in(console, csrf_of)

    assert request["code_challenge_method"] == "S256"
    assert len(request["code_challenge"]) == 43
    assert request["state"] and request["nonce"] and request["state"] != request["nonce"]
    assert request["client_id"] == CLIENT_ID
    assert request["redirect_uri"] == "http://127.0.0.1/signin/oidc/callback"
    assert request["scope"] == "openid"


def test_a_counter_signs_in_at_the_provider_and_is_shown_the_consultation_form(console, browser_at_provider,
                                                                                  csrf_of, provider):
    done = sign_in(console, browser_at_provider, csrf_of, "counter")

    assert done.status_code == 200
    assert 'content="0;url=/counter/consultations/new"' in done.text
    assert console.get("/", follow_redirects=False).headers["location"] == "/counter/consultations/new"
    assert "tsunagu_oidc" not in console.cookies


def test_the_session_calls_the_services_with_the_providers_access_token(console, browser_at_provider, csrf_of,
                                                                         provider, services):
    services.on("GET", "/readyz", (200, {"status": "ready", "checks": {}}))
    sign_in(console, browser_at_provider, csrf_of, "ops")

    assert console.get("/ops").status_code == 200

    assert {r.headers["authorization"] for r in services.requests} == {
        f"Bearer {provider.issued[-1]['access_token']}"}


def test_the_session_ends_when_the_access_token_does(services, browser_at_provider, csrf_of):
    provider = TestIdentityProvider(issuer=IDP, ttl_seconds=120)
    with oidc_console(services, provider) as console:
        done = console.get(sign_in_at_provider(TestClient(provider.app, base_url=IDP), start_sign_in(console, csrf_of)))

    session_cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    max_age = int(session_cookie.split("Max-Age=", 1)[1].split(";", 1)[0])
    assert 0 < max_age <= 120


def test_the_page_asked_for_before_signing_in_is_where_the_person_goes_next(console, browser_at_provider, csrf_of):
    request = start_sign_in(console, csrf_of, next_path="/counter/follow-ups")

    done = console.get(sign_in_at_provider(browser_at_provider, request))

    assert 'content="0;url=/counter/follow-ups"' in done.text


def assert_nobody_signed_in(console, response: httpx.Response, message: str = REFUSED) -> None:
    assert response.status_code in (400, 403), response.text
    assert message in response.text
    assert COOKIE not in console.cookies
    assert console.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_a_callback_with_another_state_signs_nobody_in(console, browser_at_provider, csrf_of, provider):
    request = start_sign_in(console, csrf_of)
    callback = sign_in_at_provider(browser_at_provider, {**request, "state": "forged-state"})

    response = console.get(callback)

    assert_nobody_signed_in(console, response, "サインインの手続きが一致しません。")
    assert provider.issued == []


def test_a_callback_without_a_sign_in_started_in_this_browser_signs_nobody_in(console, browser_at_provider,
                                                                               csrf_of, services, provider):
    """Login CSRF: someone else's code, sent to this browser."""
    with oidc_console(services, provider) as attacker:
        callback = sign_in_at_provider(browser_at_provider, start_sign_in(attacker, csrf_of))

    assert_nobody_signed_in(console, console.get(callback), "サインインの手続きの有効期限が切れました。")


def test_a_callback_is_used_once(console, browser_at_provider, csrf_of):
    callback = sign_in_at_provider(browser_at_provider, start_sign_in(console, csrf_of))
    assert console.get(callback).status_code == 200
    console.cookies.delete(COOKIE)

    assert_nobody_signed_in(console, console.get(callback), "サインインの手続きの有効期限が切れました。")


def test_a_code_issued_for_another_pkce_challenge_signs_nobody_in(console, browser_at_provider, csrf_of, provider):
    """An intercepted code is worthless without the verifier of the sign-in it was issued to."""
    callback = sign_in_at_provider(browser_at_provider, start_sign_in(console, csrf_of))
    for grant in provider.grants.values():
        grant.code_challenge = "challenge-of-another-sign-in"

    assert_nobody_signed_in(console, console.get(callback))
    assert provider.issued == []


@pytest.mark.parametrize("changes", [
    pytest.param({"nonce": "nonce-of-another-sign-in"}, id="another nonce"),
    pytest.param({"nonce": None}, id="no nonce"),
    pytest.param({"aud": "another-client"}, id="another client"),
    pytest.param({"iss": "http://another-idp.test"}, id="another issuer"),
    pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
])
def test_an_id_token_that_is_not_for_this_sign_in_signs_nobody_in(console, browser_at_provider, csrf_of, provider,
                                                                   changes):
    provider.id_token_changes = changes

    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of))


@pytest.mark.parametrize("changes", [
    pytest.param({"aud": "another-deployment"}, id="another audience"),
    pytest.param({"iss": "another-issuer"}, id="another issuer"),
    pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
])
def test_an_access_token_the_services_would_refuse_signs_nobody_in(console, browser_at_provider, csrf_of, provider,
                                                                    changes):
    provider.access_token_changes = changes

    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of))


def test_tokens_signed_by_a_key_the_provider_does_not_publish_sign_nobody_in(console, browser_at_provider, csrf_of,
                                                                              provider):
    provider.signing_key = new_signing_key()[0]

    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of))


@pytest.mark.parametrize("role", ["", "partner"], ids=["no role", "not a staff role"])
def test_an_account_without_a_staff_role_is_told_so_and_not_signed_in(console, browser_at_provider, csrf_of, role):
    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of, role), NO_ROLE)


def test_an_account_with_two_staff_roles_is_not_signed_in(console, browser_at_provider, csrf_of, provider):
    provider.access_token_changes = {"tsunagu_role": ["counter", "ops"]}

    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of), NO_ROLE)


def test_an_unreachable_provider_is_said_so_and_nobody_is_signed_in(services, csrf_of):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    settings = dict(console_session_keys=Fernet.generate_key().decode(), console_secure_cookies=False,
                    staff_issuer=STAFF_ISSUER, staff_audience=STAFF_AUDIENCE, console_oidc_issuer=IDP,
                    console_oidc_client_id=CLIENT_ID, console_oidc_redirect_url="http://127.0.0.1/signin/oidc/callback")
    with TestClient(build_app(ConsoleSettings(**settings), transport=httpx.MockTransport(services.handle),
                              oidc_transport=httpx.MockTransport(down)), base_url="http://127.0.0.1") as console:
        response = console.post("/signin/oidc", data={"csrf": csrf_of(console.get("/signin").text)})

    assert response.status_code == 503
    assert "市の認証基盤に接続できません。" in response.text
    assert COOKIE not in console.cookies


def test_the_sign_in_button_needs_the_sign_in_pages_form_token(console):
    console.get("/signin")

    response = console.post("/signin/oidc", data={"csrf": "forged"}, follow_redirects=False)

    assert response.status_code == 403
    assert "tsunagu_oidc" not in console.cookies


def test_an_access_token_too_large_for_the_session_cookie_is_said_so_instead_of_dropped_by_the_browser(
        console, browser_at_provider, csrf_of, provider):
    provider.access_token_changes = {"groups": [f"group-{n:04d}" for n in range(300)]}

    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of), "トークンが大きすぎる")


@pytest.mark.parametrize("missing", ["console_oidc_client_id", "console_oidc_redirect_url", "staff_audience"])
def test_the_console_does_not_start_with_an_identity_provider_but_half_its_settings(missing):
    settings = {"console_session_keys": Fernet.generate_key().decode(), "staff_issuer": STAFF_ISSUER,
                "staff_audience": STAFF_AUDIENCE, "console_oidc_issuer": IDP, "console_oidc_client_id": CLIENT_ID,
                "console_oidc_redirect_url": "https://console.example/signin/oidc/callback", missing: ""}

    with pytest.raises(SystemExit, match=missing.upper()):
        check_settings(ConsoleSettings(**settings))


def test_staff_tokens_are_never_checked_with_a_shared_secret_algorithm():
    with pytest.raises(ValueError, match="public keys only"):
        ConsoleSettings(staff_algorithms=["HS256"])


def test_signing_out_ends_the_providers_session_too_and_comes_back_to_the_sign_in_page(
        console, browser_at_provider, csrf_of):
    """On a counter's shared computer, the next person is not signed in by the provider's session."""
    sign_in(console, browser_at_provider, csrf_of, "counter")
    csrf = csrf_of(console.get("/any-page-shows-the-sign-out-form").text)

    out = console.post("/signout", data={"csrf": csrf}, follow_redirects=False)

    location = urlsplit(out.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{IDP}/logout"
    assert dict(parse_qsl(location.query)) == {"client_id": CLIENT_ID,
                                               "post_logout_redirect_uri": "http://127.0.0.1/signin"}
    assert COOKIE not in console.cookies


def test_signing_out_of_a_development_sign_in_stays_in_the_console(services, provider, csrf_of):
    with oidc_console(services, provider, console_dev_staff_key=new_signing_key()[0]) as console:
        console.post("/signin/staff", data={"csrf": csrf_of(console.get("/signin").text), "role": "ops"})
        csrf = csrf_of(console.get("/any-page-shows-the-sign-out-form").text)

        out = console.post("/signout", data={"csrf": csrf}, follow_redirects=False)

    assert out.headers["location"] == "/signin"


def test_an_id_token_for_several_clients_must_name_this_one_as_its_authorized_party(
        console, browser_at_provider, csrf_of, provider):
    provider.id_token_changes = {"aud": [CLIENT_ID, "another-client"]}
    assert_nobody_signed_in(console, sign_in(console, browser_at_provider, csrf_of))

    provider.id_token_changes = {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}
    assert sign_in(console, browser_at_provider, csrf_of).status_code == 200


def test_a_discovery_document_naming_another_issuer_is_not_trusted(services, csrf_of):
    impostor = TestIdentityProvider(issuer="http://impostor.test")
    with oidc_console(services, impostor) as console:
        response = console.post("/signin/oidc", data={"csrf": csrf_of(console.get("/signin").text)},
                                follow_redirects=False)

    assert response.status_code == 503
    assert "tsunagu_oidc" not in console.cookies
