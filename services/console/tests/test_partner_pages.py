"""The partner's pages without the services: the console is built as `serve` builds it and talks to a
fake of partner-notification's API that records every call."""

from __future__ import annotations

import re

import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.bootstrap import ConsoleSettings, build_app

PARTNER_ID = "0192f0c1-7a2e-7cc3-9a41-00000000b001"
ANSWERED = "0192f0c1-7a2e-7cc3-9a41-0000000e0001"
WAITING = "0192f0c1-7a2e-7cc3-9a41-0000000e0002"
BASE = f"/v1/partners/{PARTNER_ID}"


def a_referral(referral_id: str, status: str, last_response: str | None) -> dict:
    return {"referral_id": referral_id, "case_id": "0192f0c1-7a2e-7cc3-9a41-000000000001",
            "municipality_code": "142166", "need": "no_food", "accept_by": "2026-12-02T17:00:00+09:00",
            "last_response": last_response, "last_response_at": "2026-11-28T10:00:00+09:00" if last_response else None,
            "status": status, "status_ja": {"requested": "依頼中", "accepted": "受理"}[status],
            "updated_at": "2026-11-28T10:00:00+09:00"}


class FakePartnerApi:
    """partner-notification as the console sees it: answers by path, refusals to raise, calls kept."""

    def __init__(self):
        self.calls: list[tuple[str, str, object]] = []
        self.refuse: dict[str, ApiRefused] = {}
        self.inbox = [a_referral(WAITING, "requested", None), a_referral(ANSWERED, "accepted", "accepted")]
        self.inbox.sort(key=lambda r: r["referral_id"], reverse=True)

    async def _answer(self, method: str, path: str, body=None):
        self.calls.append((method, path, body))
        if path in self.refuse:
            raise self.refuse[path]
        if path == f"{BASE}/referrals":
            return self.inbox
        if method == "GET" and path.startswith(f"{BASE}/referrals/"):
            return {"referral_id": WAITING, "case_id": "x", "need": "no_food",
                    "person": {"person_ref": "p", "name": "座間 花子", "name_kana": "ざまはなこ", "phone": "046-000-0000"},
                    "provision": {"basis": "consent", "purpose": "referral", "items": ["name", "name_kana", "phone"],
                                  "notice_ja": "この提供は記録されています（個人情報保護法第29条）。"}}
        if path.endswith("/responses"):
            return {"response_id": "r"}
        if path == f"{BASE}/deliveries":
            return [{"delivery_id": "d", "event_type": "tsunagu.referral.requested.v1", "status": "dead",
                     "attempts": 8, "created_at": "2026-11-28T10:00:00+09:00", "delivered_at": None}]
        if path == f"{BASE}/provisions":
            return [{"provision_id": "v", "referral_id": WAITING, "items": ["name", "phone"], "basis": "consent",
                     "purpose": "referral", "provided_at": "2026-11-28T11:00:00+09:00"}]
        raise AssertionError(f"unexpected call {method} {path}")

    async def get(self, service, path, token, **params):
        assert service == "partners" and token == "tzp_partner-token"
        return await self._answer("GET", path)

    async def post(self, service, path, token, body=None):
        assert service == "partners" and token == "tzp_partner-token"
        return await self._answer("POST", path, body)

    def fetched_details(self) -> bool:
        return any(m == "GET" and p.startswith(f"{BASE}/referrals/") for m, p, _ in self.calls)


@pytest.fixture
def fake():
    return FakePartnerApi()


@pytest.fixture
def app(fake):
    built = build_app(ConsoleSettings(console_session_keys=Fernet.generate_key().decode(),
                                      console_secure_cookies=False))
    built.state.apis = fake
    return built


def signed_in(app, role: str = "partner", kind: str = "partner") -> tuple[httpx.AsyncClient, str]:
    sessions = app.state.pages.sessions
    session = sessions.new(kind=kind, role=role, subject=PARTNER_ID, display_name="連携団体",
                           token="tzp_partner-token")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://console",
                               cookies={COOKIE: sessions.seal(session)})
    return client, session.csrf


async def test_the_inbox_lists_unanswered_referrals_first_with_their_deadline(app):
    client, _ = signed_in(app)

    page = await client.get("/partner/inbox")

    assert page.status_code == 200
    text = page.text
    assert text.index(WAITING[-8:]) < text.index(ANSWERED[-8:])
    assert "回答待ち" in text and "食べるものがない" in text and "2026年12月2日(水) 17:00" in text
    assert page.headers["cache-control"] == "no-store"


async def test_opening_a_referral_does_not_fetch_the_persons_details_and_says_viewing_them_is_recorded(app, fake):
    client, _ = signed_in(app)

    page = await client.get(f"/partner/referrals/{WAITING}")

    assert page.status_code == 200
    assert "個人情報の提供記録" in page.text and "本人情報を表示する（記録されます）" in page.text
    assert "座間 花子" not in page.text and not fake.fetched_details()


async def test_the_details_are_fetched_only_on_the_button_and_shown_uncached(app, fake):
    client, csrf = signed_in(app)

    page = await client.post(f"/partner/referrals/{WAITING}/details", data={"csrf": csrf})

    assert page.status_code == 200 and fake.fetched_details()
    assert "座間 花子" in page.text and "記録されています" in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_a_details_request_without_the_sessions_csrf_token_fetches_nothing(app, fake):
    client, _ = signed_in(app)

    page = await client.post(f"/partner/referrals/{WAITING}/details", data={"csrf": "forged"})

    assert page.status_code == 403 and not fake.fetched_details()


async def test_a_refused_details_fetch_shows_the_services_japanese_reason(app, fake):
    client, csrf = signed_in(app)
    fake.refuse[f"{BASE}/referrals/{WAITING}"] = ApiRefused(403, "本人の同意がないため、本人情報は提供できません。", "no consent")

    page = await client.post(f"/partner/referrals/{WAITING}/details", data={"csrf": csrf})

    assert page.status_code == 403 and "本人の同意がないため" in page.text


async def test_an_acceptance_is_posted_and_the_partner_is_sent_back_to_the_referral(app, fake):
    client, csrf = signed_in(app)

    answered = await client.post(f"/partner/referrals/{WAITING}/responses", data={"csrf": csrf, "response": "accepted"})

    assert answered.status_code == 303 and answered.headers["location"] == f"/partner/referrals/{WAITING}"
    assert ("POST", f"{BASE}/referrals/{WAITING}/responses", {"response": "accepted"}) in fake.calls


async def test_a_decline_carries_its_reason(app, fake):
    client, csrf = signed_in(app)

    await client.post(f"/partner/referrals/{WAITING}/responses",
                      data={"csrf": csrf, "response": "declined", "decline_reason": "capacity_full"})

    assert ("POST", f"{BASE}/referrals/{WAITING}/responses",
            {"response": "declined", "decline_reason": "capacity_full"}) in fake.calls


async def test_a_decline_without_a_reason_is_refused_in_japanese_and_nothing_is_sent(app, fake):
    client, csrf = signed_in(app)

    page = await client.post(f"/partner/referrals/{WAITING}/responses", data={"csrf": csrf, "response": "declined"})

    assert page.status_code == 422 and "辞退の理由を選んでください。" in page.text
    assert not any(p.endswith("/responses") for _, p, _ in fake.calls)


async def test_an_answer_the_referral_cannot_take_shows_the_conflict_in_japanese(app, fake):
    client, csrf = signed_in(app)
    fake.refuse[f"{BASE}/referrals/{ANSWERED}/responses"] = ApiRefused(409, "この紹介はすでに受理しています。",
                                                                      "already accepted")

    page = await client.post(f"/partner/referrals/{ANSWERED}/responses", data={"csrf": csrf, "response": "accepted"})

    assert page.status_code == 409 and "この紹介はすでに受理しています。" in page.text
    assert re.search(r'role="alert"', page.text)


async def test_the_answer_forms_follow_where_the_referral_stands(app):
    client, _ = signed_in(app)

    waiting = (await client.get(f"/partner/referrals/{WAITING}")).text
    accepted = (await client.get(f"/partner/referrals/{ANSWERED}")).text

    assert "受理する" in waiting and "辞退する" in waiting and "支援を終了する" not in waiting
    assert "受理する" not in accepted and "本人と接触したと記録する" in accepted and "支援を終了する" in accepted


async def test_a_referral_not_in_the_partners_inbox_is_not_found(app):
    client, _ = signed_in(app)

    assert (await client.get("/partner/referrals/0192f0c1-7a2e-7cc3-9a41-0000000e0099")).status_code == 404
    assert (await client.get("/partner/referrals/not-an-id")).status_code == 404


async def test_the_deliveries_page_shows_the_delivery_log_and_the_provisions_record(app):
    client, _ = signed_in(app)

    page = await client.get("/partner/deliveries")

    assert page.status_code == 200
    assert "配信できず" in page.text and "氏名、電話番号" in page.text and "本人の同意" in page.text


@pytest.mark.parametrize("path", ["/partner/inbox", f"/partner/referrals/{WAITING}", "/partner/deliveries"])
async def test_staff_are_refused_the_partners_pages(app, fake, path):
    client, _ = signed_in(app, role="coordinator", kind="staff")

    page = await client.get(path)

    assert page.status_code == 403 and fake.calls == []


async def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(app):
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://console")

    page = await client.get("/partner/inbox")

    assert page.status_code == 303 and page.headers["location"].startswith("/signin?next=")
