"""The housing council's pages, on a fake of housing-support's API: what each page shows, what each
form sends, and that a refused or forged form changes nothing."""

import re
from datetime import datetime
from urllib.parse import unquote

import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.bootstrap import ConsoleSettings, build_app
from tsunagu_console.entrypoints.pages import FLASH
from tsunagu_contracts.japan import JST

SUPPORT = "0192f0c1-7a2e-7cc3-9a41-0000000a0001"
OTHER = "0192f0c1-7a2e-7cc3-9a41-0000000a0002"
LEAD = "0192f0c1-7a2e-7cc3-9a41-00000000c000"
HELPER = "0192f0c1-7a2e-7cc3-9a41-00000000c001"
TASK = "0192f0c1-7a2e-7cc3-9a41-0000000b0001"
MEMBERS = [
    {"member_id": LEAD, "name": "住宅課", "kind": "division", "division": "housing", "partner_id": None,
     "takes_on": ["house_hunting", "check_ins"], "registered_at": "2026-11-01T09:00:00+09:00"},
    {"member_id": HELPER, "name": "居住支援法人 すまいる", "kind": "partner", "division": None,
     "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001", "takes_on": ["check_ins"],
     "registered_at": "2026-11-02T09:00:00+09:00"},
]
MISSED = {"check_in_id": "0192f0c1-7a2e-7cc3-9a41-0000000d0001", "support_id": SUPPORT, "case_id": OTHER,
          "kind": "visit", "status": "missed", "result": None, "member_id": None, "missed_occurrences": 2,
          "escalation": None, "scheduled_for": "2026-11-28T10:00:00+09:00", "at": "2026-11-29T10:00:00+09:00",
          "result_label_ja": None, "kind_label_ja": "訪問", "lead_member_id": LEAD}
DETAIL = {
    "support_id": SUPPORT, "case_id": OTHER, "person_ref": OTHER, "referral_id": None, "referred_at": None,
    "stage": "accompaniment", "stage_label_ja": "入居後の伴走支援", "days_in_stage": 12, "lead_member_id": LEAD,
    "lead_name": "住宅課", "opened_at": "2026-10-01T09:00:00+09:00", "ended_at": None, "end_reason": None,
    "stages": [{"from_stage": None, "to_stage": "house_hunting", "at": "2026-10-01T09:00:00+09:00", "by": "x",
                "reason": None, "end_reason": None},
               {"from_stage": "move_in", "to_stage": "accompaniment", "at": "2026-11-17T09:00:00+09:00", "by": "x",
                "reason": "入居後の生活が落ち着いた", "end_reason": None}],
    "tasks": [{"task_id": TASK, "member_id": HELPER, "member_name": "居住支援法人 すまいる", "kind": "check_ins",
               "due_on": "2026-12-20", "assigned_at": "2026-11-17T09:00:00+09:00", "done_at": None}],
    "tenancy": {"tenancy_id": OTHER, "landlord": "ざま不動産", "address": "座間市緑ケ丘1-1-1 101",
                "moved_in_on": "2026-11-15", "ended_on": None, "end_reason": None},
    "check_in_schedule": [{"rule_id": OTHER, "kind": "visit", "rrule": "x", "grace_minutes": 1440,
                           "next_due": "2026-12-10T10:00:00+09:00"}],
    "check_ins": [MISSED | {"status": "missed"},
                  {**MISSED, "check_in_id": OTHER, "status": "recorded", "result": "well", "member_id": HELPER,
                   "missed_occurrences": None, "at": "2026-11-20T10:00:00+09:00"}],
}


class FakeHousing:
    """housing-support's API as the console calls it: canned answers, every call recorded, and a
    refusal to raise on the next write when one is set."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self.keys: list[str | None] = []
        """The Idempotency-Key of each POST, in order."""
        self.refusal: ApiRefused | None = None

    async def get(self, service: str, path: str, token: str, **params):
        assert service == "housing" and token == "council-token"
        self.calls.append(("GET", path, params))
        if path == "/v1/members":
            return MEMBERS
        if path == "/v1/supports":
            items = [{"support_id": SUPPORT, "case_id": OTHER, "stage": "accompaniment", "days_in_stage": 12,
                      "lead_member_id": LEAD, "lead_name": "住宅課", "opened_at": "2026-10-01T09:00:00+09:00",
                      "next_check_in": "2026-12-10T10:00:00+09:00"},
                     {"support_id": OTHER, "case_id": OTHER, "stage": "house_hunting", "days_in_stage": 3,
                      "lead_member_id": HELPER, "lead_name": "居住支援法人 すまいる",
                      "opened_at": "2026-11-26T09:00:00+09:00", "next_check_in": None}]
            return {"items": items, "page": 1, "next_page": None}
        if path == f"/v1/supports/{SUPPORT}":
            return DETAIL
        if path == "/v1/check-ins":
            return {"items": [MISSED] if params.get("missed") else []}
        if path == "/v1/overview":
            return {"month": params["month"][:7],
                    "supports_by_stage": [{"stage": "house_hunting", "count": 4}, {"stage": "accompaniment", "count": 2}],
                    "check_ins_this_month": {"done": 31, "missed": 2, "missed_occurrences": 3, "escalated": 1},
                    "days_from_referral_to_move_in": {"median": 41, "tenancies": 5},
                    "tenancies_ended_by_reason": [{"reason": "moved_out", "count": 1}, {"reason": "died", "count": 0}]}
        raise AssertionError(f"unexpected GET {path}")

    async def _write(self, method: str, path: str, body):
        self.calls.append((method, path, body))
        if self.refusal is not None:
            raise self.refusal
        return {}

    async def post(self, service: str, path: str, token: str, body=None, *, idempotency_key: str | None = None):
        self.keys.append(idempotency_key)
        return await self._write("POST", path, body)

    async def put(self, service: str, path: str, token: str, body):
        return await self._write("PUT", path, body)

    def writes(self) -> list[tuple[str, str, dict]]:
        return [c for c in self.calls if c[0] != "GET"]


@pytest.fixture
def housing():
    return FakeHousing()


@pytest.fixture
def app(housing):
    app = build_app(ConsoleSettings(console_session_keys=Fernet.generate_key().decode(),
                                    console_secure_cookies=False))
    app.state.apis = housing
    return app


@pytest.fixture
async def browser(app):
    """An HTTP client signed in with a role's session cookie; `browser("counter")` for another role."""
    clients = []

    def signed_in_as(role: str = "council") -> httpx.AsyncClient:
        sessions = app.state.pages.sessions
        session = sessions.new(kind="staff", role=role, subject=f"dev-{role}", display_name=role, token=f"{role}-token")
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                   cookies={COOKIE: sessions.seal(session)})
        client.csrf = session.csrf
        clients.append(client)
        return client

    yield signed_in_as
    for client in clients:
        await client.aclose()


def flash(response: httpx.Response) -> str:
    return unquote(response.cookies.get(FLASH, ""))


async def test_supports_are_grouped_by_stage_in_the_contracts_order_with_their_lead_and_a_link(browser):
    page = (await browser().get("/council/supports")).text

    assert page.index("住まい探し") < page.index("入居後の伴走支援")
    assert f'href="/council/supports/{SUPPORT}"' in page and "居住支援法人 すまいる" in page
    assert "12日目" in page


async def test_the_supports_filter_passes_only_known_stages_and_members_to_the_service(browser, housing):
    await browser().get("/council/supports", params={"stage": "contract", "member": HELPER})
    await browser().get("/council/supports", params={"stage": "no-such-stage", "member": "../x"})

    listed = [params for method, path, params in housing.calls if path == "/v1/supports"]
    assert listed[0]["stage"] == "contract" and listed[0]["member"] == HELPER
    assert listed[1]["stage"] == "" and listed[1]["member"] == ""


async def test_a_missed_check_in_is_flagged_with_one_button_per_likely_result(browser):
    page = (await browser().get("/council/check-ins")).text

    assert "未実施" in page and "（2回分）" in page
    assert "会えた（問題なし）" in page and "不在だった" in page
    assert f'href="/council/supports/{SUPPORT}#check-in"' in page


async def test_one_tap_records_the_follow_up_as_the_supports_lead_and_returns_to_the_check_ins(browser, housing):
    client = browser()

    response = await client.post("/council/check-ins", data={
        "csrf": client.csrf, "support_id": SUPPORT, "kind": "visit", "member_id": LEAD, "result": "well"})

    assert response.status_code == 303 and response.headers["location"] == "/council/check-ins"
    assert flash(response) == "見守り（問題なし）を記録しました。"
    assert housing.writes() == [("POST", f"/v1/supports/{SUPPORT}/check-ins",
                                 {"kind": "visit", "result": "well", "member_id": LEAD})]


async def test_a_support_id_that_is_not_an_id_never_reaches_the_service(browser, housing):
    client = browser()

    response = await client.post("/council/check-ins", data={
        "csrf": client.csrf, "support_id": "../members", "kind": "visit", "member_id": LEAD, "result": "well"})

    assert response.status_code == 422 and "居住支援が正しくありません。" in response.text
    assert housing.writes() == []


async def test_a_form_without_the_sessions_csrf_token_records_nothing(browser, housing):
    response = await browser().post("/council/check-ins", data={
        "csrf": "forged", "support_id": SUPPORT, "kind": "visit", "member_id": LEAD, "result": "well"})

    assert response.status_code == 403
    assert housing.writes() == []


@pytest.mark.parametrize("path", ["/council/supports", f"/council/supports/{SUPPORT}", "/council/check-ins",
                                  "/council/overview", "/council/members"])
async def test_another_role_may_not_open_the_council_pages(browser, housing, path):
    response = await browser("counter").get(path)

    assert response.status_code == 403 and "このページを見る権限がありません。" in response.text
    assert housing.calls == []


async def test_nobody_signed_in_is_sent_to_sign_in(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        response = await client.get("/council/check-ins")

    assert response.status_code == 303 and response.headers["location"].startswith("/signin?next=")


async def test_a_supports_page_shows_its_whole_history_and_a_form_for_each_action(browser):
    page = (await browser().get(f"/council/supports/{SUPPORT}")).text

    for text in ("入居後の生活が落ち着いた", "座間市緑ケ丘1-1-1 101", "未実施", "問題なし", "見守り・安否確認",
                 "見守りを記録する", "段階を変える", "主担当を変える", "タスクを割り当てる", "見守りの予定を設定する"):
        assert text in page, text
    assert page.count('name="csrf"') >= 6


async def test_a_stage_move_the_service_refuses_shows_its_words_beside_the_form_and_changes_nothing(browser, housing):
    client = browser()
    housing.refusal = ApiRefused(409, "「入居後の伴走支援」から「契約」へは進めません。", "a support in accompaniment cannot move")

    response = await client.post(f"/council/supports/{SUPPORT}/stage",
                                 data={"csrf": client.csrf, "to_stage": "contract", "reason": ""})

    assert response.status_code == 409
    assert 'role="alert"' in response.text and "「入居後の伴走支援」から「契約」へは進めません。" in response.text
    assert flash(response) == ""


async def test_moving_in_sends_the_home_and_ending_sends_only_its_reason_and_day(browser, housing):
    client = browser()

    await client.post(f"/council/supports/{SUPPORT}/stage", data={
        "csrf": client.csrf, "to_stage": "move_in", "reason": "契約締結", "landlord": "ざま不動産",
        "address": "座間市1-1", "moved_in_on": "2026-12-01", "end_reason": "died"})
    await client.post(f"/council/supports/{SUPPORT}/stage", data={
        "csrf": client.csrf, "to_stage": "ended", "end_reason": "moved_out", "ended_on": "", "landlord": "x"})

    assert [body for _, _, body in housing.writes()] == [
        {"to_stage": "move_in", "reason": "契約締結",
         "tenancy": {"landlord": "ざま不動産", "address": "座間市1-1", "moved_in_on": "2026-12-01"}},
        {"to_stage": "ended", "end_reason": "moved_out"}]


async def test_the_lead_and_tasks_are_changed_through_the_service(browser, housing):
    client = browser()

    lead = await client.post(f"/council/supports/{SUPPORT}/lead", data={"csrf": client.csrf, "member_id": HELPER})
    await client.post(f"/council/supports/{SUPPORT}/tasks", data={
        "csrf": client.csrf, "member_id": HELPER, "kind": "guarantor", "due_on": "2026-12-20"})
    await client.post(f"/council/supports/{SUPPORT}/tasks/{TASK}/done", data={"csrf": client.csrf})

    assert lead.status_code == 303 and flash(lead) == "主担当を変更しました。"
    assert housing.writes() == [
        ("PUT", f"/v1/supports/{SUPPORT}/lead", {"member_id": HELPER}),
        ("POST", f"/v1/supports/{SUPPORT}/tasks", {"member_id": HELPER, "kind": "guarantor", "due_on": "2026-12-20"}),
        ("POST", f"/v1/supports/{SUPPORT}/tasks/{TASK}/done", None)]


async def test_the_fuller_check_in_form_records_any_result_at_a_time_given_in_japan_time(browser, housing):
    client = browser()

    await client.post(f"/council/supports/{SUPPORT}/check-ins", data={
        "csrf": client.csrf, "kind": "safety_contact", "result": "needs_support", "member_id": HELPER,
        "at": "2026-11-29T08:30"})

    assert housing.writes() == [("POST", f"/v1/supports/{SUPPORT}/check-ins", {
        "kind": "safety_contact", "result": "needs_support", "member_id": HELPER, "at": "2026-11-29T08:30:00+09:00"})]


async def test_the_schedule_form_becomes_one_rule_per_chosen_kind_in_japan_time(browser, housing):
    client = browser()

    response = await client.post(f"/council/supports/{SUPPORT}/schedule", data={
        "csrf": client.csrf, "safety_contact_freq": "DAILY", "safety_contact_interval": "1",
        "safety_contact_start": "2026-12-01T10:00", "safety_contact_grace": "60",
        "visit_freq": "MONTHLY", "visit_interval": "1", "visit_start": "2026-12-10T14:00", "visit_grace": "1440"})

    assert response.status_code == 303
    assert housing.writes() == [("PUT", f"/v1/supports/{SUPPORT}/check-in-schedule", {"rules": [
        {"kind": "safety_contact", "grace_minutes": 60,
         "rrule": "DTSTART;TZID=Asia/Tokyo:20261201T100000\nRRULE:FREQ=DAILY;INTERVAL=1"},
        {"kind": "visit", "grace_minutes": 1440,
         "rrule": "DTSTART;TZID=Asia/Tokyo:20261210T140000\nRRULE:FREQ=MONTHLY;INTERVAL=1"}]})]


@pytest.mark.parametrize("fields, message", [
    ({}, "見守りの頻度を少なくとも一つ選んでください。"),
    ({"visit_freq": "MONTHLY", "visit_start": ""}, "訪問の初回の日時を入力してください。"),
    ({"visit_freq": "HOURLY", "visit_start": "2026-12-10T14:00"}, "訪問の頻度を選んでください。"),
    ({"visit_freq": "DAILY", "visit_start": "2026-12-10T14:00", "visit_interval": "0"}, "訪問の間隔は1から365"),
    ({"visit_freq": "DAILY", "visit_start": "next tuesday"}, "日時が正しくありません。"),
])
async def test_a_schedule_the_console_can_tell_is_wrong_is_shown_again_and_sends_nothing(browser, housing, fields,
                                                                                           message):
    client = browser()

    response = await client.post(f"/council/supports/{SUPPORT}/schedule", data={"csrf": client.csrf, **fields})

    assert response.status_code == 422 and message in response.text
    assert housing.writes() == []


async def test_the_overview_defaults_to_this_month_in_japan_with_the_reiwa_year_and_numbers_as_text(browser, housing):
    page = (await browser().get("/council/overview")).text

    this_month = datetime.now(JST).date().replace(day=1)
    assert ("GET", "/v1/overview", {"month": this_month.isoformat()}) in housing.calls
    assert f"（令和{this_month.year - 2018}年{this_month.month}月）" in page
    assert 'class="bar"' in page and "4件" in page and "41日" in page


@pytest.mark.parametrize("month", ["2026-13", "0000-01", "2026-1", "2026-11-01", "令和8年"])
async def test_a_month_that_is_not_one_is_refused_without_asking_the_service(browser, housing, month):
    wrong = await browser().get("/council/overview", params={"month": month})

    assert wrong.status_code == 422 and "月は「2026-11」の形で選んでください。" in wrong.text
    assert [c for c in housing.calls if c[1] == "/v1/overview"] == []


async def test_the_overview_of_a_chosen_month_names_its_era_year(browser, housing):
    chosen = await browser().get("/council/overview", params={"month": "2019-05"})

    assert "令和元年5月" in chosen.text
    assert [c[2]["month"] for c in housing.calls if c[1] == "/v1/overview"] == ["2019-05-01"]


async def test_members_are_listed_and_a_division_is_registered_with_its_roles(browser, housing):
    client = browser()
    listed = (await client.get("/council/members")).text

    response = await client.post("/council/members", data={
        "csrf": client.csrf, "kind": "division", "name": "高齢者関係課", "division": "elderly", "partner_id": "",
        "takes_on": ["check_ins", "life_support"]})

    assert "居住支援法人 すまいる" in listed and "見守り・安否確認" in listed
    assert response.status_code == 303 and flash(response) == "構成員を登録しました。"
    assert housing.writes() == [("POST", "/v1/members", {
        "kind": "division", "name": "高齢者関係課", "takes_on": ["check_ins", "life_support"], "division": "elderly"})]


async def test_a_refused_member_is_shown_again_with_what_was_typed(browser, housing):
    client = browser()
    housing.refusal = ApiRefused(422, "入力内容を確認してください。", "invalid", [
        {"field": "takes_on", "message_ja": "担う役割を一つ以上選んでください。", "message_en": "x"}])

    response = await client.post("/council/members", data={
        "csrf": client.csrf, "kind": "division", "name": "高齢者関係課", "division": "elderly"})
    bad_partner = await client.post("/council/members", data={
        "csrf": client.csrf, "kind": "partner", "name": "すまいる", "partner_id": "not-an-id", "takes_on": "check_ins"})

    assert response.status_code == 422 and "担う役割を一つ以上選んでください。" in response.text
    assert 'value="高齢者関係課"' in response.text
    assert bad_partner.status_code == 422 and "連携団体IDが正しくありません。" in bad_partner.text
    assert len(housing.writes()) == 1, "the partner without an id was never sent"


def request_keys(page: str) -> list[str]:
    return re.findall(r'name="request_key" value="([^"]+)"', page)


async def test_each_check_in_form_carries_its_own_key_and_a_double_tap_sends_it_twice_for_housing_to_record_once(
        browser, housing):
    client = browser()
    first_page, second_page = (await client.get("/council/check-ins")).text, (await client.get("/council/check-ins")).text
    tap = {"csrf": client.csrf, "support_id": SUPPORT, "kind": "visit", "member_id": LEAD, "result": "well",
           "request_key": request_keys(first_page)[0]}

    await client.post("/council/check-ins", data=tap)
    await client.post("/council/check-ins", data=tap)

    keys = request_keys(first_page)
    assert len(keys) == 2 and len(set(keys + request_keys(second_page))) == 4, "one key per form, new on each page"
    assert housing.keys == [keys[0], keys[0]], "both taps carry the form's key: housing-support records one"


async def test_the_fuller_check_in_form_sends_its_key_and_a_key_of_another_shape_is_not_sent(browser, housing):
    client = browser()
    [key] = request_keys((await client.get(f"/council/supports/{SUPPORT}")).text)
    form = {"csrf": client.csrf, "kind": "visit", "result": "well", "member_id": HELPER}

    await client.post(f"/council/supports/{SUPPORT}/check-ins", data=form | {"request_key": key})
    await client.post(f"/council/supports/{SUPPORT}/check-ins", data=form | {"request_key": "a\r\nX-Injected: 1"})

    assert housing.keys == [key, None]
