"""The whole loop with a 支援会議 and a withdrawn consent: a partner the person never consented to
hears of its referral and answers it under a recorded statutory basis; when the person withdraws
the only consent a partner's referral rests on, the partner is told, can no longer answer, and a
division takes the need.

intake, referral and partner-notification run as real processes; the partner is a loopback
webhook receiver that answers through partner-notification's API.
"""

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED, WITHDRAWN = "tsunagu.referral.requested.v1", "tsunagu.intake.consent-withdrawn.v1"
LIVING_SUPPORT = {"kind": "division", "division": "living_support"}


@pytest.fixture
async def stack(food_bank):
    """The food bank first for `no_food`, then the living-support division, which needs no consent."""
    await food_bank.route(LIVING_SUPPORT)
    return food_bank


async def a_case(stack, consents: list[dict]) -> str:
    async with httpx.AsyncClient(base_url=stack.intake.url, timeout=30) as client:
        created = await client.post("/v1/consultations", headers=stack.auth("counter"), json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "outreach", "urgency": "immediate", "needs": ["no_food"],
            "primary_need": "no_food", "consents": consents})
    assert created.status_code == 201, created.text
    return created.json()


async def heard(stack, event_type: str, case_id: str) -> list:
    return await eventually(lambda: asyncio.sleep(0, [r for r in stack.receiver.of_type(event_type)
                                                      if r.event["subject"] == case_id]), until=bool)


async def answer(stack, referral_id: str) -> httpx.Response:
    partner = stack.registered
    async with httpx.AsyncClient(base_url=stack.partners.url, timeout=30) as client:
        return await client.post(f"/v1/partners/{partner['partner_id']}/referrals/{referral_id}/responses",
                                 json={"response": "accepted"},
                                 headers={"Authorization": f"Bearer {partner['api_token']}"})


async def referrals(stack, case_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        response = await client.get(f"/v1/cases/{case_id}/referrals", headers=stack.auth("coordinator"))
    return response.json()["referrals"] if response.status_code == 200 else []


async def test_a_partner_without_consent_hears_of_and_accepts_its_referral_under_a_recorded_support_conference(
        stack):
    case_id = (await a_case(stack, consents=[]))["case_id"]
    async with httpx.AsyncClient(base_url=stack.intake.url, timeout=30) as client:
        recorded = await client.post(f"/v1/cases/{case_id}/statutory-bases", headers=stack.auth("coordinator"),
                                     json={"basis": "support_conference_sra_9",
                                           "held_on": datetime.now(UTC).date().isoformat(), "valid_until": "2099-03-31",
                                           "members": [{"kind": "partner", "partner_id": stack.registered["partner_id"]}],
                                           "purposes": ["referral"]})
    assert recorded.status_code == 201, recorded.text

    [requested] = await heard(stack, REQUESTED, case_id)
    accepted = await answer(stack, requested.event["data"]["referral_id"])

    assert accepted.status_code == 201, accepted.text
    assert await eventually(lambda: referrals(stack, case_id), until=lambda r: r and r[0]["status"] == "accepted")


async def test_a_withdrawn_consent_is_told_to_the_partner_ends_its_answers_and_a_division_takes_the_need(stack):
    created = await a_case(stack, consents=[{"recipient": {"kind": "partner",
                                                           "partner_id": stack.registered["partner_id"]},
                                             "purpose": "referral", "method": "written"}])
    case_id, consent_id = created["case_id"], created["consent_ids"][0]
    [requested] = await heard(stack, REQUESTED, case_id)

    async with httpx.AsyncClient(base_url=stack.intake.url, timeout=30) as client:
        withdrawn = await client.post(f"/v1/consents/{consent_id}/withdrawal", headers=stack.auth("counter"))
    assert withdrawn.status_code == 204, withdrawn.text
    await heard(stack, WITHDRAWN, case_id)
    moved = await eventually(lambda: referrals(stack, case_id), until=lambda r: len(r) == 2)
    late = await answer(stack, requested.event["data"]["referral_id"])

    assert [(r["recipient"].get("division"), r["status"]) for r in moved] == [
        (None, "withdrawn"), ("living_support", "requested")]
    assert late.status_code in {403, 409}, late.text
    assert late.json()["message_ja"], "the partner is told why, in Japanese first"
