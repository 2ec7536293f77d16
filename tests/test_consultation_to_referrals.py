"""A consultation at any counter becomes a つなぐシート whose referrals nobody can lose.

intake and referral run as real processes on the real broker and PostgreSQL.
"""

import uuid

import asyncpg
import httpx
import pytest

from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack


@pytest.fixture
async def intake(service_process):
    return await service_process("intake")


@pytest.fixture
async def referral(service_process):
    return await service_process("referral", extra_env={"TSUNAGU_REFERRAL_TIMER_INTERVAL_S": "0.5"})


async def register(intake, auth_headers, body, key=None) -> httpx.Response:
    headers = auth_headers("counter") | ({"Idempotency-Key": key} if key else {})
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        return await client.post("/v1/consultations", json=body, headers=headers)


async def referrals_of(referral, auth_headers, case_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=referral.url, timeout=20) as client:
        response = await client.get(f"/v1/cases/{case_id}/referrals", headers=auth_headers("coordinator"))
    return response.json()["referrals"] if response.status_code == 200 else []


async def test_a_consultation_with_four_needs_becomes_four_referrals_each_visible_with_its_state(
        intake, referral, auth_headers, consultation):
    created = await register(intake, auth_headers, consultation())
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]

    referrals = await eventually(lambda: referrals_of(referral, auth_headers, case_id), until=lambda r: len(r) == 4)

    assert {r["need"] for r in referrals} == {"rent_loan", "housing", "debt", "health"}
    assert all(r["status"] == "requested" and r["status_label_ja"] == "依頼中" for r in referrals)
    housing = next(r for r in referrals if r["need"] == "housing")
    assert housing["recipient"] == {"kind": "division", "division": "housing"}
    assert referrals[0]["need"] == "rent_loan", "the most pressing need is asked first"

    async def intake_view():
        async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
            return (await client.get(f"/v1/cases/{case_id}", headers=auth_headers("counter"))).json()

    case = await eventually(intake_view, until=lambda c: len(c["referrals"]) == 4)
    assert {n["code"] for n in case["needs"]} == {"rent_loan", "housing", "debt", "health"}
    assert case["consents"][0]["purpose"] == "housing_support"


async def test_the_same_post_with_the_same_idempotency_key_creates_one_consultation(intake, auth_headers,
                                                                                     consultation):
    key = str(uuid.uuid4())
    first = await register(intake, auth_headers, consultation(), key=key)
    again = await register(intake, auth_headers, consultation(), key=key)
    other = await register(intake, auth_headers, consultation(urgency="normal"), key=key)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    conn = await asyncpg.connect(intake.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM consultations") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2  # the consultation and its consent
    finally:
        await conn.close()


async def test_bad_input_gets_field_messages_in_japanese_and_english_and_stores_nothing(
        intake, auth_headers, consultation):
    response = await register(intake, auth_headers, consultation(needs=["housing", "rent"], primary_need="debt"))

    assert response.status_code == 422
    body = response.json()
    assert body["message_ja"] == "入力内容に誤りがあります。何も保存されていません。"
    error = body["errors"][0]
    assert error["field"] == "needs.1" and error["message_ja"] == "選択肢にない値です。（'health', 'housing', 'income', 'rent_loan', 'tax_utilities', 'debt', 'job_search', 'work_trouble', 'community', 'family', 'childcare', 'elder_care', 'withdrawal', 'abuse_dv', 'no_food' or 'other'）"
    assert error["message_en"]
    refused = await register(intake, auth_headers, consultation(
        screening={"chart_version": "2026.1", "cues": ["rent_arrears"], "confirmed": ["health"]}))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "screening.confirmed"
    conn = await asyncpg.connect(intake.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM persons") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()


async def test_each_role_may_do_only_its_own_part(intake, auth_headers, consultation):
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        anonymous = await client.post("/v1/consultations", json=consultation())
        partner = await client.post("/v1/consultations", json=consultation(), headers=auth_headers("partner"))
        service = await client.post("/v1/consultations", json=consultation(),
                                    headers=auth_headers("service", audience="intake"))
        forged = await client.post("/v1/consultations", json=consultation(),
                                   headers={"Authorization": "Bearer not-a-token"})
    assert anonymous.status_code == 401 and anonymous.json()["message_ja"] == "認証が必要です。"
    assert partner.status_code == 401, "a partner's session is signed for housing support, not for intake"
    assert service.status_code == 403, "partner-notification may call intake, but not register consultations"
    assert forged.status_code == 401


async def test_a_second_registration_of_the_same_person_warns_of_a_possible_duplicate(
        intake, auth_headers, consultation):
    first = (await register(intake, auth_headers, consultation())).json()
    retyped = consultation(person={"name": "座間花子", "name_kana": "ザマ ハナコ", "birth_date": "1968-04-02"},
                           counter="living_support")
    second = (await register(intake, auth_headers, retyped)).json()

    assert second["possible_duplicates"] == [first["person_ref"]]
    assert "同じ氏名" in second["warning_ja"]
    conn = await asyncpg.connect(intake.database_url)
    try:
        stored = await conn.fetchval("SELECT details FROM persons LIMIT 1")
    finally:
        await conn.close()
    assert "座間".encode() not in bytes(stored), "personal data is encrypted at rest"


async def test_an_illegal_transition_answers_409_and_changes_nothing(
        intake, referral, auth_headers, consultation):
    case_id = (await register(intake, auth_headers, consultation())).json()["case_id"]
    referrals = await eventually(lambda: referrals_of(referral, auth_headers, case_id), until=lambda r: len(r) == 4)
    target = referrals[0]["referral_id"]
    coordinator = auth_headers("coordinator")
    async with httpx.AsyncClient(base_url=referral.url, timeout=20) as client:
        too_early = await client.post(f"/v1/referrals/{target}/completion", json={"outcome": "supported"},
                                      headers=coordinator)
        accepted = await client.post(f"/v1/referrals/{target}/acceptance", headers=coordinator)
        twice = await client.post(f"/v1/referrals/{target}/acceptance", headers=coordinator)

    assert too_early.status_code == 409 and "依頼中" in too_early.json()["message_ja"]
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert twice.status_code == 409


async def test_a_declined_referral_goes_to_the_next_candidate(intake, referral, auth_headers, consultation):
    case_id = (await register(intake, auth_headers, consultation(needs=["income"], primary_need="income",
                                                                 screening=None))).json()["case_id"]
    first = (await eventually(lambda: referrals_of(referral, auth_headers, case_id), until=lambda r: len(r) == 1))[0]
    async with httpx.AsyncClient(base_url=referral.url, timeout=20) as client:
        declined = await client.post(f"/v1/referrals/{first['referral_id']}/decline",
                                     json={"reason": "capacity_full"}, headers=auth_headers("counter"))
    assert declined.json()["status"] == "declined"
    after = await referrals_of(referral, auth_headers, case_id)
    assert [r["recipient"]["division"] for r in after] == ["living_support", "self_reliance"]
    assert after[1]["status"] == "requested" and after[1]["candidate_rank"] == 2


async def test_a_coordinator_adds_a_referral_to_a_chosen_recipient(intake, referral, auth_headers, consultation):
    case_id = (await register(intake, auth_headers, consultation())).json()["case_id"]
    await eventually(lambda: referrals_of(referral, auth_headers, case_id), until=lambda r: len(r) == 4)
    async with httpx.AsyncClient(base_url=referral.url, timeout=20) as client:
        added = await client.post(f"/v1/cases/{case_id}/referrals", headers=auth_headers("coordinator"),
                                  json={"need": "housing", "recipient": {"kind": "division", "division": "welfare"}})
        chosen = await client.post(f"/v1/cases/{case_id}/referrals", headers=auth_headers("coordinator"),
                                   json={"need": "housing", "recipient": {"kind": "division",
                                                                          "division": "living_support"}})
    assert added.status_code == 422, "an unknown division is refused"
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["candidate_rank"] == 2 and chosen.json()["status"] == "requested"
