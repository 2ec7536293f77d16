"""Who may call what: every operation in every service's OpenAPI, called as every role, on the real services.

The table below says, for each operation, which roles are let through; everyone else must be
answered 401 or 403. The operations come from services/*/openapi.json (`make contracts`), so a new
endpoint without a row here fails the test until someone decides who may call it. "Let through"
means only that the answer is not 401/403: the calls carry made-up ids and empty bodies, so 404
and 422 are expected.
"""

from __future__ import annotations

import asyncio
import json
import re
from uuid import uuid4

import httpx
import pytest

from tsunagu_teststack.infrastructure import repo_root, stack_config

pytestmark = pytest.mark.stack

STAFF = ("counter", "coordinator", "council", "ops")
ROLES = (*STAFF, "service", "partner", "another partner", "anonymous")
EVERYONE = frozenset(ROLES)
PARTNER = frozenset({"partner"})
"""A partner on its own records (partner-notification: by its API token; housing support: by its session)."""
PARTNERS = frozenset({"partner", "another partner"})
"""Any partner: what it may see is then decided by the records, not by the role."""


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


HEALTH = {"GET /healthz": EVERYONE, "GET /readyz": EVERYONE, "GET /metrics": EVERYONE}

ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    "intake": HEALTH | {
        "POST /v1/consultations": roles("counter", "coordinator"),
        "POST /v1/persons/possible-duplicates": roles("counter", "coordinator"),
        "POST /v1/screening": roles("counter", "coordinator"),
        "GET /v1/screening/chart": roles("counter", "coordinator"),
        "POST /v1/cases/{case_id}/needs": roles("counter", "coordinator"),
        "POST /v1/cases/{case_id}/consents": roles("counter", "coordinator"),
        "POST /v1/consents/{consent_id}/withdrawal": roles("counter", "coordinator"),
        "POST /v1/cases/{case_id}/statutory-bases": roles("coordinator"),
        "POST /v1/cases/{case_id}/statutory-bases/{basis_id}/end": roles("coordinator"),
        "GET /v1/cases/{case_id}": roles("counter", "coordinator", "ops"),
    },
    "referral": HEALTH | {
        "GET /v1/cases/{case_id}/referrals": roles(*STAFF),
        "POST /v1/cases/{case_id}/referrals": roles("coordinator"),
        "GET /v1/referrals": roles("coordinator", "ops"),
        "POST /v1/referrals/{referral_id}/acceptance": roles("counter", "coordinator"),
        "POST /v1/referrals/{referral_id}/decline": roles("counter", "coordinator"),
        "POST /v1/referrals/{referral_id}/contacts": roles("counter", "coordinator"),
        "POST /v1/referrals/{referral_id}/completion": roles("counter", "coordinator"),
        "POST /v1/referrals/{referral_id}/reroute": roles("coordinator"),
        "POST /v1/cases/{case_id}/closure": roles("coordinator"),
        "GET /v1/follow-ups": roles(*STAFF),
        "POST /v1/follow-ups/{follow_up_id}/answer": roles("counter", "coordinator"),
        "GET /v1/routing": roles(*STAFF),
        "PUT /v1/routing/{need}": roles("coordinator"),
        "GET /v1/reports/summary": roles("coordinator"),
        "GET /v1/reports/partners": roles("coordinator"),
        "GET /v1/reports/declines": roles("coordinator"),
    },
    "housing-support": HEALTH | {
        "GET /v1/members": roles("council", "coordinator", "ops") | PARTNERS,
        "POST /v1/members": roles("council"),
        "POST /v1/supports": roles("council"),
        "GET /v1/supports": roles("council", "coordinator", "ops") | PARTNERS,
        "GET /v1/supports/{support_id}": roles("council", "coordinator", "ops") | PARTNERS,
        "POST /v1/supports/{support_id}/stage": roles("council") | PARTNERS,
        "PUT /v1/supports/{support_id}/lead": roles("council"),
        "POST /v1/supports/{support_id}/tasks": roles("council"),
        "POST /v1/supports/{support_id}/tasks/{task_id}/done": roles("council") | PARTNERS,
        "PUT /v1/supports/{support_id}/check-in-schedule": roles("council"),
        "POST /v1/supports/{support_id}/check-ins": roles("council") | PARTNERS,
        "GET /v1/check-ins": roles("council", "coordinator", "ops") | PARTNERS,
        "GET /v1/overview": roles("council", "coordinator", "ops"),
    },
    "partner-notification": HEALTH | {
        "POST /v1/partners": roles("coordinator"),
        "GET /v1/partners": roles("coordinator", "ops", "counter"),
        "GET /v1/partners/{partner_id}": roles("coordinator", "ops") | PARTNER,
        "PUT /v1/partners/{partner_id}/subscription": roles("coordinator") | PARTNER,
        "GET /v1/partners/{partner_id}/deliveries": roles("coordinator", "ops") | PARTNER,
        "POST /v1/partners/{partner_id}/deliveries/{delivery_id}/redelivery": roles("coordinator", "ops"),
        "POST /v1/partners/{partner_id}/webhook/enable": roles("coordinator"),
        "POST /v1/partners/{partner_id}/webhook/test": roles("coordinator") | PARTNER,
        "PUT /v1/partners/{partner_id}/webhook": roles("coordinator"),
        "POST /v1/partners/{partner_id}/api-token/rotate": roles("coordinator"),
        "POST /v1/partners/{partner_id}/webhook-secret/rotate": roles("coordinator"),
        "POST /v1/partners/{partner_id}/deactivate": roles("coordinator"),
        "POST /v1/partners/{partner_id}/session": PARTNER,
        "POST /v1/partners/{partner_id}/referrals/{referral_id}/responses": PARTNER,
        "GET /v1/partners/{partner_id}/referrals": roles("coordinator", "ops") | PARTNER,
        "GET /v1/partners/{partner_id}/referrals/{referral_id}": PARTNER,
        "GET /v1/partners/{partner_id}/provisions": roles("coordinator", "ops") | PARTNER,
    },
}


def operations(service: str) -> list[tuple[str, str]]:
    folder = repo_root() / "services" / service
    document = json.loads((folder / "openapi.json").read_text())
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in {"get", "post", "put", "patch", "delete"}]


@pytest.mark.parametrize("service", list(stack_config()["services"]))
def test_every_operation_in_the_openapi_documents_has_a_row_in_the_table(service):
    documented = {f"{method} {path}" for method, path in operations(service)}

    allowed = set(ALLOWED.get(service, HEALTH))  # a subscriber of `make new-subscriber` serves health alone
    assert documented - allowed == set(), "a new endpoint needs a row: who may call it?"
    assert allowed - documented == set(), "a row for an endpoint that is gone"


async def register_partner(partners, coordinator: dict, name: str) -> dict:
    async with httpx.AsyncClient(base_url=partners.url, timeout=30) as client:
        response = await client.post("/v1/partners", headers=coordinator, json={
            "name": name, "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": "http://127.0.0.1:9/"})
        assert response.status_code == 201, response.text
        registered = response.json()
        session = await client.post(f"/v1/partners/{registered['partner_id']}/session",
                                    headers={"Authorization": f"Bearer {registered['api_token']}"})
        assert session.status_code == 200, session.text
    return {"partner_id": registered["partner_id"], "api_token": registered["api_token"],
            "session": session.json()["access_token"]}


async def test_each_role_reaches_exactly_the_operations_the_table_gives_it(service_process, token):
    intake = await service_process("intake")
    referral, housing, partners = await asyncio.gather(
        service_process("referral"), service_process("housing-support"),
        service_process("partner-notification", extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    running = {"intake": intake, "referral": referral, "housing-support": housing, "partner-notification": partners}
    coordinator = {"Authorization": f"Bearer {token('coordinator')}"}
    mine, theirs, doomed = await asyncio.gather(register_partner(partners, coordinator, "ざまフードバンク"),
                                                register_partner(partners, coordinator, "さがみ食堂"),
                                                register_partner(partners, coordinator, "ひばり子ども食堂"))

    def bearer(service: str, role: str) -> dict[str, str]:
        if role == "anonymous":
            return {}
        if role in ("partner", "another partner"):
            partner = mine if role == "partner" else theirs
            # partner-notification knows a partner by its API token; the others by the session it signs.
            secret = partner["api_token"] if service == "partner-notification" else partner["session"]
            return {"Authorization": f"Bearer {secret}"}
        if role == "service":
            return {"Authorization": f"Bearer {token('service', audience=service)}"}
        return {"Authorization": f"Bearer {token(role)}"}

    def concrete(path: str) -> str:
        # A coordinator's call goes through: deactivation stops a partner of its own, not the one whose
        # tokens the later calls use.
        subject = doomed if path.endswith("/deactivate") else mine
        path = path.replace("{partner_id}", subject["partner_id"]).replace("{need}", "no_food")
        return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid4()), path)

    wrong: list[str] = []
    for service, process in running.items():
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
            for method, path in operations(service):
                allowed = ALLOWED[service][f"{method} {path}"]
                for role in ROLES:
                    kwargs = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
                    answer = await client.request(method, concrete(path), headers=bearer(service, role), **kwargs)
                    refused = answer.status_code in (401, 403)
                    if refused == (role in allowed):
                        wrong.append(f"{service} {method} {path} as {role}: {answer.status_code} "
                                     f"(expected {'through' if role in allowed else '401/403'})")

    assert wrong == []
