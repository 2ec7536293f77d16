"""Fixtures shared by the cross-service tests."""

import asyncio
import copy
from dataclasses import dataclass

import httpx
import pytest

from tsunagu_teststack.people import HANAKO
from tsunagu_teststack.receivers import Receiver, ReceiverServer

CONSULTATION = {
    "person": HANAKO.as_request(),
    "counter": "tax", "channel": "counter", "urgency": "high",
    "needs": ["rent_loan", "housing", "debt", "health"], "primary_need": "rent_loan",
    "consents": [{"recipient": {"kind": "division", "division": "housing"}, "purpose": "housing_support",
                  "method": "written"}],
    "screening": {"chart_version": "2026.1", "cues": ["rent_arrears", "debt_collection"],
                  "confirmed": ["rent_loan", "housing", "debt"]},
    "notes": "納税相談の際、家賃も3か月滞納していると話された。",
}


@pytest.fixture
def consultation():
    """A consultation body with four needs, one of them housing; `consultation(urgency="normal")` changes it."""
    return lambda **changes: copy.deepcopy(CONSULTATION) | changes


@dataclass
class FoodBank:
    """intake, referral and partner-notification as real processes, and one partner registered for the
    `no_food` need with a loopback webhook receiver."""

    intake: object
    referral: object
    partners: object
    receiver: Receiver
    registered: dict
    auth: object

    async def route(self, *after: dict) -> None:
        """Make the partner the first candidate for `no_food`, then `after`."""
        async with httpx.AsyncClient(base_url=self.referral.url, timeout=30) as client:
            routed = await client.put("/v1/routing/no_food", headers=self.auth("coordinator"), json={
                "candidates": [{"kind": "partner", "partner_id": self.registered["partner_id"]}, *after]})
        assert routed.status_code == 200, routed.text


@pytest.fixture
async def food_bank(service_process, auth_headers):
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification", extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    async with ReceiverServer() as server:
        receiver = Receiver()
        url = server.add("food", receiver)
        async with httpx.AsyncClient(base_url=partners.url, timeout=30) as client:
            response = await client.post("/v1/partners", headers=auth_headers("coordinator"), json={
                "name": "ざまフードバンク", "need_categories": ["no_food"], "areas": ["142166"],
                "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": url})
        assert response.status_code == 201, response.text
        yield FoodBank(intake, referral, partners, receiver, response.json(), auth_headers)


@dataclass
class ConsoleStack(FoodBank):
    """The food bank's stack with housing-support and the web console in front of all four."""

    housing: object = None
    console: object = None

    def url(self, path: str) -> str:
        return f"{self.console.url}{path}"


@pytest.fixture
async def console_stack(food_bank, service_process):
    housing = await service_process("housing-support", extra_env={"TSUNAGU_HOUSING_TIMER_INTERVAL_S": "0.5"})
    console = await service_process("console", urls={
        "intake": food_bank.intake.url, "referral": food_bank.referral.url, "housing": housing.url,
        "partners": food_bank.partners.url})
    return ConsoleStack(**vars(food_bank), housing=housing, console=console)

