"""Signing in and out of the console, and what it refuses."""

import httpx

from tsunagu_console.adapters.sessions import COOKIE

PARTNER = "5b0c3a52-6a39-4a49-9a0f-3f1f0e6c2a11"


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back_to_the_page_asked_for(console):
    response = console.get("/ops", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/ops"


def test_staff_sign_in_needs_the_sign_in_pages_own_form_token(console):
    console.get("/signin")

    response = console.post("/signin/staff", data={"csrf": "forged", "role": "ops"})

    assert response.status_code == 403
    assert COOKIE not in console.cookies


def test_a_role_the_console_does_not_know_signs_nobody_in(console, csrf_of):
    response = console.post("/signin/staff", data={"csrf": csrf_of(console.get("/signin").text), "role": "partner"})

    assert response.status_code == 403
    assert COOKIE not in console.cookies


def test_next_never_leads_away_from_the_console(console, csrf_of):
    response = console.post("/signin/staff", follow_redirects=False, data={
        "csrf": csrf_of(console.get("/signin").text), "role": "ops", "next": "//evil.example/"})

    assert response.headers["location"] == "/ops"


def test_a_partner_signs_in_when_partner_notification_accepts_its_token(console, services, csrf_of):
    services.on("POST", f"/v1/partners/{PARTNER}/session", lambda request: httpx.Response(
        200 if request.headers["authorization"] == "Bearer right-token" else 401,
        json={"access_token": "session-token", "token_type": "Bearer", "expires_in": 3600}))

    wrong = console.post("/signin/partner", data={"csrf": csrf_of(console.get("/signin").text),
                                                  "partner_id": PARTNER, "api_token": "wrong"})
    assert wrong.status_code == 401
    assert "連携団体IDまたはAPIトークンが正しくありません。" in wrong.text
    assert COOKIE not in console.cookies

    right = console.post("/signin/partner", follow_redirects=False, data={
        "csrf": csrf_of(console.get("/signin").text), "partner_id": PARTNER, "api_token": "right-token"})
    assert right.status_code == 303
    assert "right-token" not in right.headers["set-cookie"]


def test_a_partner_id_that_is_not_an_id_is_refused_without_asking_any_service(console, services, csrf_of):
    response = console.post("/signin/partner", data={"csrf": csrf_of(console.get("/signin").text),
                                                     "partner_id": "../v1/partners", "api_token": "x"})

    assert response.status_code == 401
    assert services.requests == []


def test_a_staff_page_of_another_role_is_refused(console, sign_in):
    sign_in("counter")

    response = console.get("/ops")

    assert response.status_code == 403
    assert "このページを見る権限がありません。" in response.text


def test_signing_out_needs_the_sessions_form_token_and_then_ends_the_session(console, sign_in):
    csrf = sign_in("ops")

    assert console.post("/signout", data={"csrf": "forged"}).status_code == 403
    assert console.get("/ops").status_code == 200

    console.post("/signout", data={"csrf": csrf})
    assert console.get("/ops", follow_redirects=False).status_code == 303


def test_pages_are_never_cached(console, sign_in, services):
    sign_in("ops")
    for service in ("intake", "referral", "housing", "partners"):
        services.on("GET", "/readyz", (200, {"status": "ready", "checks": {}}))

    assert console.get("/ops").headers["cache-control"] == "no-store"


def test_a_path_outside_the_static_folder_is_not_found(console):
    response = console.get("/static/..%2F..%2Fbootstrap.py")

    assert response.status_code == 404
    assert "ページが見つかりません。" in response.text


def test_the_status_page_says_which_service_does_not_answer(console, sign_in, services):
    sign_in("ops")
    services.on("GET", "/readyz", lambda request: httpx.Response(
        503 if request.url.host == "127.0.0.1" and request.url.port == 8003 else 200,
        json={"status": "unavailable" if request.url.port == 8003 else "ready", "checks": {}}))

    page = console.get("/ops").text

    assert page.count("稼働中") == 3
    assert page.count("停止・異常") == 1
