"""The coordinators' pages on a fake of the services' APIs: what each page shows, what each form
sends, and that a refused or malformed form changes nothing and says why in Japanese."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.bootstrap import ConsoleSettings, build_app
from tsunagu_console.domain import labels
from tsunagu_console.entrypoints.pages import FLASH

FOOD_BANK = "0193a000-0000-7000-8000-000000000001"
SHELTER = "0193a000-0000-7000-8000-000000000002"
CASE = "0193a000-0000-7000-8000-0000000000c1"
REFERRAL = "0193a000-0000-7000-8000-0000000000a1"
UNREACHABLE = "0193a000-0000-7000-8000-0000000000b2"
WITHDRAWN = "0193a000-0000-7000-8000-0000000000b3"


def a_partner(partner_id: str, name: str, **changes) -> dict:
    return {"partner_id": partner_id, "name": name, "need_categories": ["no_food"], "areas": ["142166"],
            "registered_at": "2026-11-01T01:00:00Z", "active": True, "deactivated_at": None,
            "webhook": {"state": "enabled", "disabled_at": None}, "kafka_topic": False,
            "subscription": {"event_types": [], "need_categories": [], "areas": []},
            "contact": {"department": "相談窓口", "email": "desk@example.org", "phone": None},
            "webhook_url": "https://partner.example.org/hook", **changes}


def a_referral(referral_id: str, status: str, **changes) -> dict:
    return {"referral_id": referral_id, "case_id": CASE, "need": "no_food", "need_label_ja": "食料がない",
            "recipient": {"kind": "partner", "partner_id": FOOD_BANK}, "candidate_rank": 1, "status": status,
            "status_label_ja": status, "urgency": "high", "accept_by": "2026-11-30T17:00:00+09:00",
            "overdue": False, **changes}


class FakeApis:
    """The services' APIs as the console calls them: canned answers by (method, service, path), and
    every call it was given."""

    def __init__(self):
        self.calls: list[tuple[str, str, str, Any]] = []
        self.partners = [a_partner(FOOD_BANK, "ざまフードバンク"), a_partner(SHELTER, "さがみシェルター")]
        self.answers: dict[tuple[str, str, str], Any] = {
            ("GET", "referral", "/v1/referrals"): [
                a_referral(UNREACHABLE, "unreachable"), a_referral(WITHDRAWN, "withdrawn"),
                a_referral(REFERRAL, "requested", overdue=True)],
            ("GET", "referral", "/v1/routing"): {"no_food": [{"kind": "partner", "partner_id": FOOD_BANK},
                                                             {"kind": "partner", "partner_id": SHELTER}]},
            ("GET", "partners", "/v1/partners"): self.partners,
            ("GET", "referral", "/v1/reports/partners"): {"recipients": [
                {"kind": "partner", "partner_id": FOOD_BANK, "label_ja": "ざまフードバンク", "referrals_received": 8,
                 "accepted": 6, "declined": 2, "acceptance_rate": 0.75, "median_hours_to_first_answer": 3.5,
                 "decline_reasons": {}, "overdue": 1, "deliveries_failed": 2}]},
        }
        self.sent: list[tuple[str, str, str, Any]] = []

    async def call(self, method: str, service: str, path: str, token: str, body: Any = None, params=None) -> Any:
        assert token == "coordinator-token"
        self.calls.append((method, service, path, body if method != "GET" else params))
        if method != "GET":
            self.sent.append((method, service, path, body))
        answer = self.answers.get((method, service, path))
        if isinstance(answer, ApiRefused):
            raise answer
        return answer

    async def get(self, service: str, path: str, token: str, **params) -> Any:
        return await self.call("GET", service, path, token, params=params)

    async def post(self, service: str, path: str, token: str, body: Any = None) -> Any:
        return await self.call("POST", service, path, token, body if body is not None else {})

    async def put(self, service: str, path: str, token: str, body: Any) -> Any:
        return await self.call("PUT", service, path, token, body)


class Console:
    def __init__(self, client: httpx.AsyncClient, fake: FakeApis, csrf: str):
        self.client, self.fake, self.csrf = client, fake, csrf

    async def get(self, path: str, **kw) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post(self, path: str, data: dict | list | None = None, *, csrf: bool = True) -> httpx.Response:
        fields = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf:
            fields.append(("csrf", self.csrf))
        return await self.client.post(path, content=urlencode(fields),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})


async def a_console(role: str = "coordinator") -> Console:
    app = build_app(ConsoleSettings(console_session_keys=Fernet.generate_key().decode(),
                                    console_secure_cookies=False))
    fake = FakeApis()
    app.state.apis = fake
    session = app.state.pages.sessions.new(kind="staff", role=role, subject=f"dev-{role}",
                                           display_name="テスト職員", token=f"{role}-token")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                               cookies={COOKIE: app.state.pages.sessions.seal(session)})
    return Console(client, fake, session.csrf)


@pytest.fixture
async def console():
    console = await a_console()
    async with console.client:
        yield console


# referrals --------------------------------------------------------------------------------------

async def test_the_referrals_page_flags_unreachable_withdrawn_and_overdue_ones_and_links_each_case(console):
    page = await console.get("/coordinator/referrals")

    assert page.status_code == 200
    assert "通知不達" in page.text and "同意撤回・取り下げ" in page.text and "期限超過" in page.text
    assert f'href="/counter/cases/{CASE}"' in page.text
    assert "ざまフードバンク" in page.text
    assert page.text.index(UNREACHABLE) < page.text.index(REFERRAL)  # the service's order is kept


async def test_a_referral_is_rerouted_only_to_another_candidate_of_its_need(console):
    page = await console.get("/coordinator/referrals")

    reroute_form = page.text.split(f'/coordinator/referrals/{REFERRAL}/reroute')[1].split("</form>")[0]
    assert f"partner:{SHELTER}" in reroute_form and f"partner:{FOOD_BANK}" not in reroute_form


async def test_a_referral_that_already_moved_on_offers_no_reroute(console):
    page = await console.get("/coordinator/referrals")

    assert f"/coordinator/referrals/{UNREACHABLE}/reroute" not in page.text
    assert f"/coordinator/referrals/{WITHDRAWN}/reroute" not in page.text


async def test_accepting_a_referral_records_it_with_referral_and_says_so(console):
    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/accept")

    assert answer.status_code == 303 and answer.headers["location"] == "/coordinator/referrals"
    assert ("POST", "referral", f"/v1/referrals/{REFERRAL}/acceptance", {}) in console.fake.sent
    assert answer.cookies.get(FLASH)


async def test_a_decline_sends_the_chosen_reason(console):
    reason = labels.options("DeclineReason")[0][0]

    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/decline", {"reason": reason})

    assert answer.status_code == 303
    assert console.fake.sent == [("POST", "referral", f"/v1/referrals/{REFERRAL}/decline", {"reason": reason})]


async def test_a_decline_without_a_known_reason_sends_nothing_and_asks_for_one(console):
    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/decline", {"reason": "because"})

    assert answer.status_code == 422 and "辞退の理由を選んでください。" in answer.text
    assert console.fake.sent == []


async def test_a_reroute_to_a_recipient_nobody_knows_sends_nothing(console):
    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/reroute",
                                {"recipient": "partner:0193a000-0000-7000-8000-00000000dead"})

    assert answer.status_code == 422 and console.fake.sent == []


async def test_a_reroute_sends_the_chosen_recipient(console):
    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/reroute", {"recipient": f"partner:{SHELTER}"})

    assert answer.status_code == 303
    assert console.fake.sent == [("POST", "referral", f"/v1/referrals/{REFERRAL}/reroute",
                                  {"recipient": {"kind": "partner", "partner_id": SHELTER}})]


async def test_the_services_refusal_is_shown_in_its_own_words_on_the_list(console):
    console.fake.answers[("POST", "referral", f"/v1/referrals/{REFERRAL}/acceptance")] = ApiRefused(
        409, "この紹介はすでに受理されています。", "already accepted")

    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/accept")

    assert answer.status_code == 409 and "この紹介はすでに受理されています。" in answer.text
    assert FLASH not in answer.cookies


async def test_closing_a_case_sends_the_reason_to_referral(console):
    reason = labels.options("CaseClosureReason")[0][0]

    answer = await console.post(f"/coordinator/cases/{CASE}/close", {"reason": reason})

    assert answer.status_code == 303
    assert console.fake.sent == [("POST", "referral", f"/v1/cases/{CASE}/closure", {"reason": reason})]


async def test_a_form_without_the_sessions_csrf_token_is_refused_and_sends_nothing(console):
    answer = await console.post(f"/coordinator/referrals/{REFERRAL}/accept", csrf=False)

    assert answer.status_code == 403 and "フォームの有効期限が切れました" in answer.text
    assert console.fake.sent == []


async def test_a_path_that_is_not_an_id_is_not_found_and_sends_nothing(console):
    answer = await console.post("/coordinator/referrals/..%2Fcases/accept")

    assert answer.status_code == 404 and console.fake.sent == []


async def test_the_counter_role_cannot_open_the_coordinators_pages():
    console = await a_console("counter")
    async with console.client:
        answer = await console.get("/coordinator/referrals")

    assert answer.status_code == 403 and "権限がありません" in answer.text
    assert console.fake.calls == []


async def test_without_a_session_the_page_sends_to_sign_in():
    console = await a_console()
    console.client.cookies.clear()
    async with console.client:
        answer = await console.get("/coordinator/partners")

    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next=")


# routing ----------------------------------------------------------------------------------------

async def test_the_routing_page_shows_each_candidates_figures_beside_it(console):
    page = await console.get("/coordinator/routing")

    assert page.status_code == 200
    food_row = page.text.split("ざまフードバンク</th>")[1].split("</tr>")[0]
    assert "8件" in food_row and "75%" in food_row and "3.5時間" in food_row and "2件" in food_row
    params = next(c[3] for c in console.fake.calls if c[2] == "/v1/reports/partners")
    assert params["from"].endswith("-01")


async def test_setting_a_needs_candidates_sends_them_in_the_order_chosen(console):
    answer = await console.post("/coordinator/routing/no_food", [
        ("candidate", f"partner:{SHELTER}"), ("candidate", "division:self_reliance"), ("candidate", "")])

    assert answer.status_code == 303
    assert console.fake.sent == [("PUT", "referral", "/v1/routing/no_food", {"candidates": [
        {"kind": "partner", "partner_id": SHELTER}, {"kind": "division", "division": "self_reliance"}]})]


async def test_the_same_candidate_twice_is_refused_and_nothing_is_sent(console):
    answer = await console.post("/coordinator/routing/no_food", [
        ("candidate", f"partner:{SHELTER}"), ("candidate", f"partner:{SHELTER}")])

    assert answer.status_code == 422 and "同じ紹介先を二度選ばないでください" in answer.text
    assert console.fake.sent == []


# partners ---------------------------------------------------------------------------------------

REGISTRATION = {"name": "あさひ子ども食堂", "need_categories": "no_food", "areas": "142166、142051",
                "department": "事務局", "email": "office@asahi.example", "phone": "",
                "webhook_url": "https://asahi.example/hook"}


async def test_registering_a_partner_shows_its_token_and_secret_once_on_the_answer_itself(console):
    console.fake.answers[("POST", "partners", "/v1/partners")] = {
        "partner_id": SHELTER, "api_token": "tzp_once_only", "webhook_secret": "whsec_once_only",
        "notice_ja": "今回だけ表示されます。"}

    answer = await console.post("/coordinator/partners", REGISTRATION)

    assert answer.status_code == 201
    assert "tzp_once_only" in answer.text and "whsec_once_only" in answer.text and "今回だけ" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert "tzp_once_only" not in str(answer.headers) and "location" not in answer.headers
    assert console.fake.sent == [("POST", "partners", "/v1/partners", {
        "name": "あさひ子ども食堂", "need_categories": ["no_food"], "areas": ["142166", "142051"],
        "contact": {"department": "事務局", "email": "office@asahi.example", "phone": None},
        "webhook_url": "https://asahi.example/hook", "kafka_topic": False})]


async def test_a_refused_registration_shows_the_form_again_with_what_was_typed_and_why(console):
    console.fake.answers[("POST", "partners", "/v1/partners")] = ApiRefused(
        422, "入力内容に誤りがあります。", "invalid",
        [{"field": "webhook_url", "message_ja": "この Webhook URL には送信できません。"}])

    answer = await console.post("/coordinator/partners", REGISTRATION)

    assert answer.status_code == 422
    assert "入力内容に誤りがあります。" in answer.text and "この Webhook URL には送信できません。" in answer.text
    assert 'value="あさひ子ども食堂"' in answer.text


async def test_the_partner_list_shows_each_webhooks_state():
    console = await a_console()
    console.fake.partners[1]["webhook"] = {"state": "disabled", "disabled_at": "2026-11-20T00:00:00Z"}
    async with console.client:
        page = await console.get("/coordinator/partners")

    assert page.status_code == 200 and "配信中" in page.text and "停止中（410 を受信）" in page.text


async def test_a_partners_page_offers_redelivery_for_a_failed_delivery_only(console):
    console.fake.answers[("GET", "partners", f"/v1/partners/{FOOD_BANK}")] = a_partner(FOOD_BANK, "ざまフードバンク")
    console.fake.answers[("GET", "partners", f"/v1/partners/{FOOD_BANK}/deliveries")] = [
        {"delivery_id": "0193a000-0000-7000-8000-0000000000d1", "event_type": "tsunagu.referral.requested.v1",
         "status": "dead", "attempts": 8, "last_status": 500, "created_at": "2026-11-20T00:00:00Z"},
        {"delivery_id": "0193a000-0000-7000-8000-0000000000d2", "event_type": "tsunagu.referral.requested.v1",
         "status": "delivered", "attempts": 1, "last_status": 200, "created_at": "2026-11-21T00:00:00Z"}]

    page = await console.get(f"/coordinator/partners/{FOOD_BANK}")

    assert page.status_code == 200
    assert "0000000000d1/redeliver" in page.text and "0000000000d2/redeliver" not in page.text


async def test_deactivation_asks_for_confirmation_first_and_sends_nothing_without_it(console):
    console.fake.answers[("GET", "partners", f"/v1/partners/{FOOD_BANK}")] = a_partner(FOOD_BANK, "ざまフードバンク")

    confirm = await console.get(f"/coordinator/partners/{FOOD_BANK}/deactivate")
    unconfirmed = await console.post(f"/coordinator/partners/{FOOD_BANK}/deactivate")

    assert confirm.status_code == 200 and "利用を停止しますか" in confirm.text
    assert unconfirmed.status_code == 303 and unconfirmed.headers["location"].endswith("/deactivate")
    assert console.fake.sent == []

    confirmed = await console.post(f"/coordinator/partners/{FOOD_BANK}/deactivate", {"confirm": "yes"})

    assert confirmed.status_code == 303
    assert console.fake.sent == [("POST", "partners", f"/v1/partners/{FOOD_BANK}/deactivate", {})]


async def test_a_rotated_token_is_shown_once_on_the_answer(console):
    console.fake.answers[("GET", "partners", f"/v1/partners/{FOOD_BANK}")] = a_partner(FOOD_BANK, "ざまフードバンク")
    console.fake.answers[("POST", "partners", f"/v1/partners/{FOOD_BANK}/api-token/rotate")] = {
        "partner_id": FOOD_BANK, "api_token": "tzp_rotated", "previous_valid_until": "2026-11-30T00:00:00Z",
        "notice_ja": "新しい API トークンは今回だけ表示されます。"}

    answer = await console.post(f"/coordinator/partners/{FOOD_BANK}/api-token/rotate")

    assert answer.status_code == 200 and "tzp_rotated" in answer.text and FLASH not in answer.cookies


# reports ----------------------------------------------------------------------------------------

async def test_reports_default_to_this_month_in_japan_time_and_draw_a_bar_beside_each_figure(console):
    console.fake.answers[("GET", "referral", "/v1/reports/summary")] = {
        "period": {}, "consultations": 5, "people": 4, "needs_per_person": 1.5,
        "needs_per_person_city_reference": 2.3, "referrals": 6,
        "referrals_by_need": [{"need": "no_food", "need_label_ja": "食料がない", "referrals": 4},
                              {"need": "housing", "need_label_ja": "住まい", "referrals": 2}],
        "referrals_by_recipient": [], "time_to_acceptance": {"accepted": 3, "median_hours": 2.0, "p90_hours": 5.0},
        "completed": {"completed": 1, "supported": 1, "supported_share": 1.0},
        "follow_ups": {"answered": 0, "helped": 0, "helped_share": None}, "cases_closed": 0}
    console.fake.answers[("GET", "referral", "/v1/reports/declines")] = {"by_reason_and_need": []}

    page = await console.get("/coordinator/reports")

    today = labels.today()
    assert page.status_code == 200
    assert f'value="{today.replace(day=1).isoformat()}"' in page.text and f'value="{today.isoformat()}"' in page.text
    assert "width: 100%" in page.text and "width: 50%" in page.text and "4件" in page.text


async def test_reports_name_each_partner_by_its_registered_name(console):
    console.fake.answers[("GET", "referral", "/v1/reports/summary")] = {}
    console.fake.answers[("GET", "referral", "/v1/reports/declines")] = {}
    console.fake.answers[("GET", "referral", "/v1/reports/partners")]["recipients"][0]["label_ja"] = "連携団体"

    page = await console.get("/coordinator/reports")

    assert '<th scope="row">ざまフードバンク</th>' in page.text


async def test_a_period_that_is_not_a_date_asks_again_and_reads_nothing(console):
    page = await console.get("/coordinator/reports", params={"from": "11/1", "to": "2026-11-30"})

    assert page.status_code == 422 and "YYYY-MM-DD" in page.text
    assert console.fake.calls == []
