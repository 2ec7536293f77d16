"""The person closes the loop: after a referral is accepted, the counter that registered the case is
asked to find out whether the help arrived; due and overdue follow-ups are listed like referrals,
the answer is recorded once, and "not helped" gives the need back to the coordinator.

intake and referral run as real processes on the real broker and PostgreSQL, with follow-ups due
on the day of acceptance (TSUNAGU_REFERRAL_FOLLOW_UP_BUSINESS_DAYS=0) and a fast timer.
"""

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tsunagu_contracts import FollowUpAnswered, FollowUpDue
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
COORDINATOR = {"kind": "division", "division": "self_reliance"}


@pytest.fixture
async def services(service_process):
    return await asyncio.gather(service_process("intake"), service_process("referral", extra_env={
        "TSUNAGU_REFERRAL_TIMER_INTERVAL_S": "0.5", "TSUNAGU_REFERRAL_FOLLOW_UP_BUSINESS_DAYS": "0"}))


async def call(service, auth, method: str, path: str, role: str = "counter", **kw) -> httpx.Response:
    async with httpx.AsyncClient(base_url=service.url, timeout=20) as client:
        return await client.request(method, path, headers=auth(role), **kw)


async def an_accepted_referral(services, auth) -> tuple[str, str]:
    """A consultation at the tax counter whose one need (health) was accepted: (case id, referral id)."""
    intake, referral = services
    created = await call(intake, auth, "POST", "/v1/consultations", json={
        "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
        "counter": "tax", "channel": "counter", "urgency": "normal", "needs": ["health"], "primary_need": "health"})
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    [requested] = await eventually(lambda: referrals_of(referral, auth, case_id), until=lambda r: len(r) == 1)
    accepted = await call(referral, auth, "POST", f"/v1/referrals/{requested['referral_id']}/acceptance")
    assert accepted.status_code == 200, accepted.text
    return case_id, requested["referral_id"]


async def referrals_of(referral, auth, case_id: str) -> list[dict]:
    response = await call(referral, auth, "GET", f"/v1/cases/{case_id}/referrals", "coordinator")
    return response.json()["referrals"] if response.status_code == 200 else []


async def follow_ups(referral, auth, state: str | None = None, **filters) -> list[dict]:
    params = ({"state": state} if state else {}) | filters
    return (await call(referral, auth, "GET", "/v1/follow-ups", "coordinator", params=params)).json()


async def published(referral, event_type: str) -> int:
    conn = await asyncpg.connect(referral.database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1", event_type)
    finally:
        await conn.close()


async def test_an_accepted_referral_falls_due_for_its_counter_and_not_helped_gives_the_need_back_once(
        services, auth_headers):
    _, referral = services
    case_id, referral_id = await an_accepted_referral(services, auth_headers)

    [due] = await eventually(lambda: follow_ups(referral, auth_headers, "due"), until=lambda f: len(f) == 1)
    assert (due["referral_id"], due["counter"], due["counter_label_ja"], due["state_label_ja"]) == (
        referral_id, "tax", "納税課", "確認待ち")
    assert await published(referral, FollowUpDue.type) == 1

    answers = await asyncio.gather(*(call(referral, auth_headers, "POST", f"/v1/follow-ups/{due['follow_up_id']}/answer",
                                          json={"outcome": "reached_not_helped"}) for _ in range(3)))

    assert sorted(a.status_code for a in answers) == [200, 409, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()
    assert refused["message_ja"] == "このフォローアップはすでに回答済みです。"
    answered = next(a for a in answers if a.status_code == 200).json()
    assert answered["outcome_label_ja"] == "支援は届いたが、役に立たなかった"
    referrals = await referrals_of(referral, auth_headers, case_id)
    assert [(r["recipient"], r["status"]) for r in referrals][1:] == [(COORDINATOR, "requested")]
    assert referrals[1]["referral_id"] == answered["reopened_referral_id"]
    assert await published(referral, FollowUpAnswered.type) == 1
    assert await follow_ups(referral, auth_headers) == [], "an answered follow-up leaves the list"


async def test_due_and_overdue_follow_ups_are_listed_overdue_first_and_filtered_by_state_counter_and_case(
        services, auth_headers):
    _, referral = services
    late_case, late = await an_accepted_referral(services, auth_headers)
    _, on_time = await an_accepted_referral(services, auth_headers)
    await eventually(lambda: follow_ups(referral, auth_headers), until=lambda f: len(f) == 2)
    conn = await asyncpg.connect(referral.database_url)
    try:
        await conn.execute("UPDATE follow_ups SET answer_by = now() - interval '1 hour' WHERE referral_id = $1",
                           uuid.UUID(late))
    finally:
        await conn.close()

    listed = await follow_ups(referral, auth_headers)
    overdue = await follow_ups(referral, auth_headers, "overdue")
    due = await follow_ups(referral, auth_headers, "due")

    assert [(f["referral_id"], f["state"]) for f in listed] == [(late, "overdue"), (on_time, "due")]
    assert [f["referral_id"] for f in overdue] == [late] and [f["referral_id"] for f in due] == [on_time]
    assert len(await follow_ups(referral, auth_headers, counter="tax")) == 2
    assert await follow_ups(referral, auth_headers, counter="housing") == [], "one counter's own follow-ups"
    assert [f["referral_id"] for f in await follow_ups(referral, auth_headers, case_id=late_case)] == [late]
    assert await follow_ups(referral, auth_headers, case_id=str(uuid.uuid4())) == [], "one case's own follow-ups"


async def test_an_answer_that_is_not_an_outcome_is_422_in_japanese_first_and_an_unknown_follow_up_404(
        services, auth_headers):
    _, referral = services
    bad = await call(referral, auth_headers, "POST", f"/v1/follow-ups/{uuid.uuid4()}/answer",
                     json={"outcome": "fine_i_guess"})
    unknown = await call(referral, auth_headers, "POST", f"/v1/follow-ups/{uuid.uuid4()}/answer",
                         json={"outcome": "reached_helped"})
    wrong_state = await call(referral, auth_headers, "GET", "/v1/follow-ups", "coordinator",
                             params={"state": "someday"})
    not_a_case = await call(referral, auth_headers, "GET", "/v1/follow-ups", "coordinator",
                            params={"case_id": "case-1"})

    assert bad.status_code == 422 and bad.json()["message_ja"] == "入力内容に誤りがあります。何も保存されていません。"
    assert bad.json()["errors"][0]["field"] == "outcome"
    assert unknown.status_code == 404 and unknown.json()["message_ja"] == "フォローアップが見つかりません。"
    assert wrong_state.status_code == 422
    assert not_a_case.status_code == 422 and not_a_case.json()["errors"][0]["field"] == "case_id"
