"""The counter's pages without the services: the console app with a fake of intake's and referral's
APIs that records what it was asked and answers as the real ones do."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.bootstrap import ConsoleSettings, build_app

CASE = str(uuid4())
CHART = {"version": "2026.1", "title_ja": "相談チャート", "description": "",
         "cues": [{"code": "rent_arrears", "label_ja": "家賃を滞納している",
                   "suggests": [{"need": "rent_loan", "reason_ja": "家賃の滞納"}]},
                  {"code": "no_food", "label_ja": "食べるものがない・食事を抜いている",
                   "suggests": [{"need": "no_food", "reason_ja": "食事を抜いている"}]}]}
SUGGESTED = {"chart_version": "2026.1", "suggestions": [
    {"need": "rent_loan", "label_ja": "家賃やローンの支払い", "reasons_ja": ["家賃の滞納は住まいを失う前触れ"],
     "from_cues": ["rent_arrears"]}]}
FOOD_BANK = "0192f0c1-7a2e-7cc3-9a41-00000000f00d"
PARTNERS = [{"partner_id": FOOD_BANK, "name": "ざまフードバンク", "active": True},
            {"partner_id": "0192f0c1-7a2e-7cc3-9a41-0000000dead0", "name": "解散した団体", "active": False}]
KANA_REFUSED = ApiRefused(422, "入力内容に誤りがあります。", "invalid request", [
    {"field": "person.name_kana", "location": "body", "type": "string_pattern_mismatch",
     "message_ja": "ひらがなかカタカナで入力してください。", "message_en": "kana only"}])


class FakeServices:
    """intake and referral as the console sees them: canned answers, and every write kept."""

    def __init__(self):
        self.writes: list[tuple[str, str, object]] = []
        self.refuse_next: ApiRefused | None = None
        self.follow_ups: list[dict] = []
        self.follow_up_queries: list[dict] = []
        """The query of each GET /v1/follow-ups, which referral filters as the real one does."""
        self.known: list[str] = []
        """Persons intake knows by the kana name and birth date asked about."""
        self.created = {"case_id": CASE, "consultation_id": str(uuid4()), "person_ref": str(uuid4()),
                        "consent_ids": [], "possible_duplicates": [], "warning_ja": None}

    async def get(self, service, path, token, **params):
        if path == "/v1/screening/chart":
            return CHART
        if path == f"/v1/cases/{CASE}":
            return {"case_id": CASE, "person_ref": str(uuid4()), "opened_at": "2026-11-29T05:00:00+00:00",
                    "closed_at": None, "needs": [{"code": "rent_loan", "label_ja": "家賃やローンの支払い"}],
                    "consultations": [{"primary_need": "rent_loan", "needs": ["rent_loan"]}],
                    "consents": [], "referrals": []}
        if path == f"/v1/cases/{CASE}/referrals":
            raise ApiRefused(404, "つなぐシートが見つかりません。")
        if path == "/v1/follow-ups":
            self.follow_up_queries.append(params)
            return [f for f in self.follow_ups if params.get("case_id") in {None, f["case_id"]}]
        if path == "/v1/partners":
            return PARTNERS
        raise AssertionError(f"unexpected GET {service} {path}")

    async def post(self, service, path, token, body=None):
        if path == "/v1/screening":
            return SUGGESTED
        if path == "/v1/persons/possible-duplicates":
            assert set(body) == {"name_kana", "birth_date"}, "only what the check compares"
            return {"possible_duplicates": self.known,
                    "warning_ja": "同じ氏名（かな）と生年月日の方がすでに登録されています。" if self.known else None}
        if self.refuse_next is not None:
            refused, self.refuse_next = self.refuse_next, None
            raise refused
        self.writes.append((service, path, body))
        return self.created if path == "/v1/consultations" else None


@pytest.fixture
def services():
    return FakeServices()


@pytest.fixture
async def console(services):
    app = build_app(ConsoleSettings(console_session_keys=Fernet.generate_key().decode(),
                                    console_secure_cookies=False))
    app.state.apis = services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        client.app = app
        yield client


def sign_in(client, role="counter"):
    """A sealed session cookie for a staff role; its CSRF token is returned for forms."""
    sessions = client.app.state.pages.sessions
    session = sessions.new(kind="staff", role=role, subject="staff-1", display_name="窓口 職員", token="staff-token")
    client.cookies.set(COOKIE, sessions.seal(session))
    return session.csrf


def registration(csrf, **changes):
    form = {"csrf": csrf, "person.name": "座間 花子", "person.name_kana": "ざま はなこ",
            "person.birth_date": "1968-04-02", "counter": "tax", "channel": "counter", "urgency": "high",
            "needs": ["rent_loan", "housing", "no_food"], "primary_need": "rent_loan", "cues": ["rent_arrears"],
            "consents.0.division": "housing", "consents.0.purpose": "housing_support",
            "consents.0.method": "written", "notes": "家賃を3か月滞納している。", "action": "register"}
    form.update(changes)
    return form


async def test_a_counter_sees_the_registration_form_with_the_sixteen_needs_and_the_chart_cues(console):
    sign_in(console)

    page = await console.get("/counter/consultations/new")

    assert page.status_code == 200
    assert page.text.count('name="needs"') == 16 and page.text.count('name="primary_need"') == 16
    assert "家賃を滞納している" in page.text and "気づきから課題を提案" in page.text
    assert f'<option value="{FOOD_BANK}">ざまフードバンク</option>' in page.text, "a consent names a partner by name"
    assert "解散した団体" not in page.text, "only active partners can be given a new consent"


async def test_a_registration_sends_the_person_needs_screening_and_consent_to_intake_and_opens_the_case(
        console, services):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new", data=registration(csrf))

    assert answer.status_code == 303 and answer.headers["location"] == f"/counter/cases/{CASE}"
    [(service, path, body)] = services.writes
    assert (service, path) == ("intake", "/v1/consultations")
    assert body["person"] == {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02"}
    assert body["needs"] == ["rent_loan", "housing", "no_food"] and body["primary_need"] == "rent_loan"
    assert body["screening"] == {"chart_version": "2026.1", "cues": ["rent_arrears"], "confirmed": ["rent_loan"]}
    assert body["consents"] == [{"recipient": {"kind": "division", "division": "housing"},
                                 "purpose": "housing_support", "method": "written", "valid_until": None}]


async def test_a_field_intake_refuses_is_shown_beside_the_field_with_everything_entered_kept(console, services):
    csrf = sign_in(console)
    services.refuse_next = KANA_REFUSED

    answer = await console.post("/counter/consultations/new", data=registration(csrf, **{"person.name_kana": "zama"}))

    assert answer.status_code == 422
    assert 'id="person-name_kana-error">ひらがなかカタカナで入力してください。' in answer.text
    assert 'aria-describedby="person-name_kana-error"' in answer.text
    assert 'value="zama"' in answer.text and 'value="座間 花子"' in answer.text
    assert 'value="no_food" checked' in answer.text and "家賃を3か月滞納している。" in answer.text
    assert services.writes == []


async def test_a_registration_without_the_most_pressing_need_is_refused_before_intake_is_asked(console, services):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new", data=registration(csrf, primary_need=""))

    assert answer.status_code == 422
    assert "最も困っている課題（◎）を一つ選んでください。" in answer.text
    assert services.writes == []


async def test_a_half_filled_consent_row_is_refused_beside_its_fields(console, services):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new",
                                data=registration(csrf, **{"consents.0.purpose": "", "consents.0.method": ""}))

    assert answer.status_code == 422
    assert "同意の目的を選んでください。" in answer.text and "同意の方法を選んでください。" in answer.text
    assert services.writes == []


async def test_asking_for_suggestions_shows_them_with_their_reasons_and_keeps_the_form_as_entered(
        console, services):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new",
                                data=registration(csrf, action="suggest", primary_need=""))

    assert answer.status_code == 200
    assert "チャートが提案する課題" in answer.text and "家賃の滞納は住まいを失う前触れ" in answer.text
    assert 'value="rent_arrears" checked' in answer.text and 'value="座間 花子"' in answer.text
    assert services.writes == []


async def test_asking_for_suggestions_without_a_cue_says_to_tick_one(console):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new", data=registration(csrf, action="suggest", cues=[]))

    assert answer.status_code == 200, "a 2xx answer, which htmx swaps into the page"
    assert '<section id="suggestions"' in answer.text and 'class="warn">提案できませんでした' in answer.text
    assert "気づいたことを一つ以上選んでから、提案を求めてください。" in answer.text


async def test_a_possible_duplicate_is_shown_on_the_new_case_with_only_the_ids_intake_gave(console, services):
    csrf = sign_in(console)
    other = str(uuid4())
    services.created |= {"possible_duplicates": [other],
                         "warning_ja": "同じ氏名（かな）と生年月日の方がすでに登録されています。同一人物か確認してください。"}

    answer = await console.post("/counter/consultations/new", data=registration(csrf))
    case = await console.get(answer.headers["location"])

    assert answer.headers["location"] == f"/counter/cases/{CASE}?duplicate_of={other}"
    assert case.status_code == 200 and other in case.text
    assert "同じ氏名（かな）と生年月日の方がすでに登録されています。" in case.text


async def test_a_registration_without_the_session_csrf_token_is_refused_and_changes_nothing(console, services):
    sign_in(console)

    answer = await console.post("/counter/consultations/new", data=registration("forged"))

    assert answer.status_code == 403
    assert services.writes == []


async def test_withdrawing_a_consent_without_the_session_csrf_token_changes_nothing(console, services):
    sign_in(console)

    answer = await console.post(f"/counter/cases/{CASE}/consents/{uuid4()}/withdrawal", data={"csrf": "forged"})

    assert answer.status_code == 403
    assert services.writes == []


async def test_a_case_whose_sheet_is_not_yet_open_says_it_is_being_made(console):
    sign_in(console)

    page = await console.get(f"/counter/cases/{CASE}")

    assert page.status_code == 200
    assert "◎ 家賃やローンの支払い" in page.text and "つなぐシートを作成中です。" in page.text


async def test_a_partner_cannot_open_the_counter_pages(console):
    sign_in(console, role="partner")

    page = await console.get("/counter/consultations/new")

    assert page.status_code == 403


async def test_a_follow_up_answer_without_an_outcome_is_refused_and_changes_nothing(console, services):
    csrf = sign_in(console)

    answer = await console.post(f"/counter/follow-ups/{uuid4()}/answer", data={"csrf": csrf, "outcome": ""})

    assert answer.status_code == 422 and services.writes == []


async def test_a_person_already_known_by_kana_and_birth_date_is_shown_in_place_before_anything_is_stored(
        console, services):
    csrf = sign_in(console)
    services.known = [str(uuid4())]

    answer = await console.post("/counter/consultations/new", data=registration(csrf))

    assert answer.status_code == 409 and services.writes == []
    assert "同一人物の確認" in answer.text and services.known[0] in answer.text
    assert 'name="person_choice" value="new"' in answer.text
    assert 'value="座間 花子"' in answer.text and 'value="no_food" checked' in answer.text


async def test_staff_who_choose_the_known_person_register_the_consultation_to_that_person_without_new_details(
        console, services):
    csrf = sign_in(console)
    services.known = [known := str(uuid4())]

    answer = await console.post("/counter/consultations/new", data=registration(csrf, person_choice=known))

    assert answer.status_code == 303
    [(_, _, body)] = services.writes
    assert body["person_ref"] == known and "person" not in body


async def test_staff_who_decide_it_is_someone_else_register_a_new_person(console, services):
    csrf = sign_in(console)
    services.known = [str(uuid4())]

    answer = await console.post("/counter/consultations/new", data=registration(csrf, person_choice="new"))

    assert answer.status_code == 303
    [(_, _, body)] = services.writes
    assert body["person"]["name_kana"] == "ざま はなこ" and "person_ref" not in body


async def test_a_forged_person_choice_is_refused_and_changes_nothing(console, services):
    csrf = sign_in(console)

    answer = await console.post("/counter/consultations/new", data=registration(csrf, person_choice="../../x"))

    assert answer.status_code == 422 and services.writes == []
    assert "登録する相談者を選び直してください。" in answer.text


def follow_up(state, need="no_food", case_id=CASE):
    labels = {"overdue": "確認期限超過", "due": "確認待ち"}
    return {"follow_up_id": str(uuid4()), "case_id": case_id, "referral_id": str(uuid4()), "need": need,
            "need_label_ja": {"no_food": "食べるものがない", "housing": "住まい"}[need], "counter": "tax",
            "counter_label_ja": "納税課", "state": state, "state_label_ja": labels[state], "due_on": "2026-11-20",
            "answer_by": "2026-11-27T17:00:00+09:00", "outcome": None, "outcome_label_ja": None,
            "answered_at": None, "reopened_referral_id": None}


async def test_the_follow_ups_page_keeps_referrals_order_overdue_first_with_a_form_to_record_each_answer(
        console, services):
    sign_in(console)
    services.follow_ups = [follow_up("overdue"), follow_up("due", need="housing", case_id=str(uuid4()))]

    page = await console.get("/counter/follow-ups")

    assert page.status_code == 200
    assert page.text.index("確認期限超過") < page.text.index("確認待ち")
    assert page.text.count('name="outcome"') == 2 and "支援が届き、役に立った" in page.text


async def test_an_answer_to_a_follow_up_is_sent_to_referral_and_the_list_says_it_was_recorded(console, services):
    csrf = sign_in(console)
    follow_up_id = str(uuid4())

    answer = await console.post(f"/counter/follow-ups/{follow_up_id}/answer",
                                data={"csrf": csrf, "outcome": "reached_not_helped"})

    assert answer.status_code == 303 and answer.headers["location"] == "/counter/follow-ups"
    assert services.writes == [("referral", f"/v1/follow-ups/{follow_up_id}/answer", {"outcome": "reached_not_helped"})]


async def test_the_case_page_asks_referral_for_this_cases_follow_ups_only(console, services):
    sign_in(console)
    services.follow_ups = [follow_up("overdue"), follow_up("due", need="housing", case_id=str(uuid4()))]

    page = await console.get(f"/counter/cases/{CASE}")

    assert "確認期限超過" in page.text and "確認待ち" not in page.text
    assert services.follow_up_queries == [{"case_id": CASE}], "referral filters; the console does not fetch them all"


async def test_a_need_intake_refuses_on_the_case_page_is_shown_beside_the_form_with_the_choice_kept(
        console, services):
    csrf = sign_in(console)
    services.refuse_next = ApiRefused(409, "終了した相談には課題を追加できません。", "the case is closed")

    answer = await console.post(f"/counter/cases/{CASE}/needs",
                                data={"csrf": csrf, "need": "housing", "identified_by": "tax"})

    assert answer.status_code == 409 and services.writes == []
    assert "終了した相談には課題を追加できません。" in answer.text
    assert '<option value="housing" selected>' in answer.text


async def test_a_consent_added_on_the_case_page_goes_to_intake_for_the_partner_named(console, services):
    csrf = sign_in(console)
    partner = str(uuid4())

    answer = await console.post(f"/counter/cases/{CASE}/consents", data={
        "csrf": csrf, "consent.partner_id": partner, "consent.purpose": "referral", "consent.method": "oral"})

    assert answer.status_code == 303
    assert services.writes == [("intake", f"/v1/cases/{CASE}/consents", {
        "recipient": {"kind": "partner", "partner_id": partner}, "purpose": "referral", "method": "oral",
        "valid_until": None})]


async def test_a_consent_with_a_malformed_partner_id_is_refused_beside_it_and_changes_nothing(console, services):
    csrf = sign_in(console)

    answer = await console.post(f"/counter/cases/{CASE}/consents", data={
        "csrf": csrf, "consent.partner_id": "food-bank", "consent.purpose": "referral", "consent.method": "oral"})

    assert answer.status_code == 422 and services.writes == []
    assert 'id="consent-partner_id-error">連携団体IDの形式が正しくありません。' in answer.text
