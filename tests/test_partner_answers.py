"""A partner's answers reach referral in the order they were accepted, and an answer that does not
fit the referral is refused at the partner's edge instead of being dropped later.

intake, referral and partner-notification run as real processes; the partner is a loopback
receiver that answers through partner-notification's API.
"""

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tsunagu_teststack.receivers import Receiver
from tsunagu_teststack.waiting import eventually

REQUESTED = "tsunagu.referral.requested.v1"
ACCEPT = {"response": "accepted"}
CONTACT = {"response": "contact_made", "contact_method": "phone"}


class Partner:
    """A partner organisation on loopback, and the three services it works with."""

    def __init__(self, intake, referral, partners, auth_headers, receiver: Receiver, registered: dict):
        self.intake, self.referral, self.partners, self.auth = intake, referral, partners, auth_headers
        self.receiver, self.id, self.token = receiver, registered["partner_id"], registered["api_token"]

    async def referred(self) -> tuple[str, str]:
        """A consultation whose one need is referred to this partner: (case id, referral id)."""
        async with httpx.AsyncClient(base_url=self.intake.url, timeout=30) as client:
            response = await client.post("/v1/consultations", headers=self.auth("counter"), json={
                "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
                "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": ["no_food"],
                "primary_need": "no_food", "consents": [{"recipient": {"kind": "partner", "partner_id": self.id},
                                                         "purpose": "referral", "method": "written"}]})
        assert response.status_code == 201, response.text
        case_id = response.json()["case_id"]
        requested = await eventually(lambda: asyncio.sleep(0, [r for r in self.receiver.of_type(REQUESTED)
                                                               if r.event["subject"] == case_id]), until=bool)
        return case_id, requested[0].event["data"]["referral_id"]

    async def answer(self, referral_id: str, body: dict) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.partners.url, timeout=30) as client:
            return await client.post(f"/v1/partners/{self.id}/referrals/{referral_id}/responses", json=body,
                                     headers={"Authorization": f"Bearer {self.token}"})

    async def status_at_referral(self, case_id: str) -> str:
        async with httpx.AsyncClient(base_url=self.referral.url, timeout=30) as client:
            response = await client.get(f"/v1/cases/{case_id}/referrals", headers=self.auth("coordinator"))
        return response.json()["referrals"][0]["status"]


@pytest.fixture
async def partner(food_bank):
    await food_bank.route()
    return Partner(food_bank.intake, food_bank.referral, food_bank.partners, food_bank.auth, food_bank.receiver,
                   food_bank.registered)


@pytest.mark.stack
async def test_two_quick_answers_reach_referral_in_order_and_none_is_dropped(partner):
    cases = [await partner.referred() for _ in range(4)]

    for case_id, referral_id in cases:
        # Sent at once, as a partner's system might: contact is not sure to come second.
        contact, accept = await asyncio.gather(partner.answer(referral_id, CONTACT),
                                               partner.answer(referral_id, ACCEPT))
        assert accept.status_code == 201, accept.text
        if contact.status_code == 409:  # it came first: refused, so the partner sends it again
            contact = await partner.answer(referral_id, CONTACT)
        assert contact.status_code == 201, contact.text

    for case_id, _ in cases:
        assert await eventually(lambda: partner.status_at_referral(case_id),
                                until=lambda s: s == "contact_made") == "contact_made"
    assert "not applied" not in partner.referral.log_path.read_text(), "referral refused none of the answers it was sent"


@pytest.mark.stack
async def test_an_answer_that_does_not_fit_the_referral_or_its_closed_case_is_refused_and_nothing_kept(
        partner):
    case_id, referral_id = await partner.referred()

    too_early = await partner.answer(referral_id, CONTACT)
    accepted = await partner.answer(referral_id, ACCEPT)
    twice = await partner.answer(referral_id, ACCEPT)

    assert too_early.status_code == 409, too_early.text
    assert "受理" in too_early.json()["message_ja"] and "accepted" in too_early.json()["message_en"]
    assert accepted.status_code == 201
    assert twice.status_code == 409, twice.text
    conn = await asyncpg.connect(partner.partners.database_url)
    try:
        kept = await conn.fetch("SELECT response FROM responses")
        relayed = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = "
                                      "'tsunagu.partners.responded.v1'")
    finally:
        await conn.close()
    assert [r["response"] for r in kept] == ["accepted"] and relayed == 1, "only the accepted answer"
    assert await eventually(lambda: partner.status_at_referral(case_id),
                            until=lambda s: s == "accepted") == "accepted"

    async with httpx.AsyncClient(base_url=partner.referral.url, timeout=30) as client:
        closed = await client.post(f"/v1/cases/{case_id}/closure", json={"reason": "resolved"},
                                   headers=partner.auth("coordinator"))
    assert closed.status_code == 204, closed.text
    await eventually(lambda: closure_seen(partner, referral_id), until=bool)
    after_closing = await partner.answer(referral_id, CONTACT)
    assert after_closing.status_code == 409 and after_closing.json()["message_en"] == "the case is closed"


async def closure_seen(partner: Partner, referral_id: str) -> bool:
    conn = await asyncpg.connect(partner.partners.database_url)
    try:
        return await conn.fetchval("SELECT status = 'closed' FROM partner_referrals WHERE referral_id = $1",
                                   uuid.UUID(referral_id))
    finally:
        await conn.close()


def test_partner_notification_allows_exactly_the_answers_referral_applies():
    from tsunagu_partners.domain.answers import ANSWERS
    from tsunagu_referral.domain.referral import TRANSITIONS, Action, Status
    from tsunagu_referral.handlers.partner_responses import ACTIONS

    referral_applies = {(status.value, answer): TRANSITIONS[(status, action)].value
                        for answer, action in ACTIONS.items() for status in Status
                        if (status, action) in TRANSITIONS}
    assert ANSWERS == referral_applies
    assert Action.REROUTE not in ACTIONS.values(), "a partner never reroutes"
