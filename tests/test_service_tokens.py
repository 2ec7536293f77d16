"""Tokens prove who calls whom: intake's internal person API, attacked on the real running service.

Intake serves a person's details only on its internal port, only to partner-notification (by a
token signed with partner-notification's own key, for intake, short-lived), and only for a partner
and purpose the case holds a consent or statutory basis for; each answer is recorded in intake's
own table, with no personal data in it.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import jwt
import pytest

from tsunagu_servicehost.auth import ServiceSigner, private_key
from tsunagu_teststack.tokens import service_key

pytestmark = pytest.mark.stack

PERSON = {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02", "phone": "046-000-0000"}


@pytest.fixture
async def intake(service_process):
    return await service_process("intake")


async def a_case(intake, auth_headers, consents: list[dict]) -> str:
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
        response = await client.post("/v1/consultations", headers=auth_headers("counter") | {
            "Idempotency-Key": str(uuid.uuid4())}, json={
            "person": PERSON, "counter": "tax", "channel": "counter", "urgency": "high",
            "needs": ["no_food"], "primary_need": "no_food", "consents": consents})
    assert response.status_code == 201, response.text
    return response.json()["case_id"]


def for_partner(partner_id: str, purpose: str = "referral") -> dict:
    return {"recipient": {"kind": "partner", "partner_id": partner_id}, "purpose": purpose, "method": "written"}


async def ask_for_person(intake, case_id: str, token: str | None, *, partner_id: str, purpose: str = "referral",
                         public: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(base_url=intake.url if public else intake.internal_url, timeout=30) as client:
        return await client.get(f"/internal/v1/cases/{case_id}/person",
                                params={"partner_id": partner_id, "purpose": purpose},
                                headers={"Authorization": f"Bearer {token}"} if token else {})


def partner_notification_token(audience: str = "intake", ttl_seconds: int = 60) -> str:
    return ServiceSigner("partner-notification", service_key("partner-notification")).for_service(
        audience, ttl_seconds=ttl_seconds)


async def provisions(intake) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(intake.database_url)
    try:
        return await conn.fetch("SELECT * FROM provisions ORDER BY provided_at")
    finally:
        await conn.close()


async def test_partner_notification_gets_the_details_a_consent_allows_and_intake_records_the_provision(
        intake, auth_headers):
    partner_id = str(uuid.uuid4())
    case_id = await a_case(intake, auth_headers, [for_partner(partner_id)])

    answer = await ask_for_person(intake, case_id, partner_notification_token(), partner_id=partner_id)

    assert answer.status_code == 200, answer.text
    assert {k: v for k, v in answer.json().items() if k not in ("person_ref", "provision")} == {
        "name": PERSON["name"], "name_kana": PERSON["name_kana"], "phone": PERSON["phone"]}, \
        "what a referral needs, and no summary or notes"
    [provision] = await provisions(intake)
    assert provision["items"] == ["name", "name_kana", "phone"]
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
        case = (await client.get(f"/v1/cases/{case_id}", headers=auth_headers("coordinator"))).json()
    assert [(p["partner_id"], p["purpose"]) for p in case["provisions"]] == [(partner_id, "referral")]
    assert (str(provision["case_id"]), str(provision["partner_id"]), provision["purpose"], provision["basis"],
            provision["requested_by"]) == (case_id, partner_id, "referral", "consent",
                                           "service:partner-notification")
    assert not any(PERSON[item] in str(value) for value in dict(provision).values() for item in ("name", "phone")), \
        "no personal data in the provision record"


async def test_details_without_a_consent_for_that_partner_and_purpose_are_refused_and_nothing_is_recorded(
        intake, auth_headers):
    partner_id, other_partner = str(uuid.uuid4()), str(uuid.uuid4())
    case_id = await a_case(intake, auth_headers, [for_partner(partner_id, "check_in")])

    for_another_purpose = await ask_for_person(intake, case_id, partner_notification_token(), partner_id=partner_id,
                                               purpose="referral")
    for_another_partner = await ask_for_person(intake, case_id, partner_notification_token(),
                                               partner_id=other_partner, purpose="check_in")

    for refused in (for_another_purpose, for_another_partner):
        assert refused.status_code == 403, refused.text
        assert refused.json()["message_ja"].startswith("この連携団体への")
        assert "no active consent" in refused.json()["message_en"]
    assert await provisions(intake) == []


async def test_a_statutory_basis_lets_its_members_have_the_details_until_it_is_ended(intake, auth_headers):
    partner_id = str(uuid.uuid4())
    case_id = await a_case(intake, auth_headers, [])
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
        recorded = await client.post(f"/v1/cases/{case_id}/statutory-bases", headers=auth_headers("coordinator"), json={
            "basis": "support_conference_swa_106_6", "held_on": datetime.now(UTC).date().isoformat(),
            "valid_until": "2099-03-31", "members": [{"kind": "partner", "partner_id": partner_id}],
            "purposes": ["check_in"]})
        assert recorded.status_code == 201, recorded.text

        under_the_basis = await ask_for_person(intake, case_id, partner_notification_token(), partner_id=partner_id,
                                               purpose="check_in")
        for_a_purpose_it_does_not_cover = await ask_for_person(intake, case_id, partner_notification_token(),
                                                               partner_id=partner_id, purpose="referral")
        ended = await client.post(f"/v1/cases/{case_id}/statutory-bases/{recorded.json()['basis_id']}/end",
                                  headers=auth_headers("coordinator"))
        assert ended.status_code == 200, ended.text
        after_it_ended = await ask_for_person(intake, case_id, partner_notification_token(), partner_id=partner_id,
                                              purpose="check_in")

    assert under_the_basis.status_code == 200, under_the_basis.text
    assert (for_a_purpose_it_does_not_cover.status_code, after_it_ended.status_code) == (403, 403)
    [provision] = await provisions(intake)
    assert (provision["basis"], provision["purpose"]) == ("support_conference_swa_106_6", "check_in")


async def test_the_public_port_has_no_internal_api(intake, auth_headers):
    partner_id = str(uuid.uuid4())
    case_id = await a_case(intake, auth_headers, [for_partner(partner_id)])

    answer = await ask_for_person(intake, case_id, partner_notification_token(), partner_id=partner_id, public=True)

    assert answer.status_code == 404
    assert await provisions(intake) == []


def forged_with_a_shared_secret() -> str:
    """What any holder of the former deployment-wide HS256 secret could sign."""
    now = int(time.time())
    return jwt.encode({"iss": "tsunagu", "sub": "service:partner-notification", "role": "service", "iat": now,
                       "exp": now + 60}, "a-deployment-wide-secret-of-at-least-32-chars", algorithm="HS256")


def minted_by_the_verifier() -> str:
    """intake signing, with its own key, a token that claims to be partner-notification's."""
    now = int(time.time())
    return jwt.encode({"iss": "partner-notification", "sub": "service:partner-notification", "aud": "intake",
                       "role": "service", "iat": now, "exp": now + 60}, private_key(service_key("intake")),
                      algorithm="EdDSA")


def from_a_service_that_is_not_a_caller() -> str:
    return ServiceSigner("housing-support", service_key("housing-support")).for_service("intake")


@pytest.mark.parametrize("attack, forge", [
    ("an HS256 token forged with a shared secret", forged_with_a_shared_secret),
    ("a service token minted by the verifier itself", minted_by_the_verifier),
    ("a token from a service that is not among intake's callers", from_a_service_that_is_not_a_caller),
    ("partner-notification's token for another audience", lambda: partner_notification_token("referral")),
    ("partner-notification's expired token", lambda: partner_notification_token(ttl_seconds=-120)),
    ("partner-notification's token living an hour", lambda: partner_notification_token(ttl_seconds=3600)),
    ("a staff coordinator's token", lambda: None),
    ("no token at all", lambda: ""),
])
async def test_the_internal_api_refuses(attack, forge, intake, auth_headers):
    partner_id = str(uuid.uuid4())
    case_id = await a_case(intake, auth_headers, [for_partner(partner_id)])
    presented = forge()
    if presented is None:
        presented = auth_headers("coordinator")["Authorization"].removeprefix("Bearer ")

    answer = await ask_for_person(intake, case_id, presented or None, partner_id=partner_id)

    assert answer.status_code in (401, 403), f"{attack}: {answer.status_code} {answer.text}"
    assert answer.json()["message_ja"], "a reason a person can read"
    assert await provisions(intake) == []
