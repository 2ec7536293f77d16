"""Requests generated from each service's own OpenAPI document (Schemathesis), sent to the service
running on the real broker and database with a token of a role it admits, get only answers that
document lists: no server error, a listed status, content type and body, and invalid data refused.

Generation is derandomized (the same requests on every run, so a failure reproduces) and bounded per
operation, so the four services take about a minute together.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from uuid import uuid4

import httpx
import pytest
import requests
from aiokafka import AIOKafkaProducer
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance,
)

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, encode
from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.waiting import eventually

SERVICES = list(stack_config()["services"])
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REQUESTS_PER_OPERATION = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
"""At most this many generated requests per operation and mode; negative ones must also be refused."""
ROLE_PREFERENCE = ["counter", "coordinator", "council", "ops", "service", "partner"]
"""The role whose token each operation gets: the first of these its `x-tsunagu-roles` admits."""


@dataclass
class Fuzzing:
    base_url: str
    tokens: dict[str, str]
    """A bearer token per role; `partner` on partner-notification is the registered partner's API token."""
    partner_id: str | None = None
    known: dict[str, str] = field(default_factory=dict)
    """Ids that exist (a case, its consent, its referral): valid requests name them, so they reach past 404."""
    answers: Counter = field(default_factory=Counter)
    """How many answers of each status the generated requests got."""
    failures: list[str] = field(default_factory=list)

    def credentials(self, operation) -> tuple[dict[str, str], dict[str, str]]:
        """The Authorization header and fixed path parameters for an operation."""
        roles = operation.definition.raw.get("x-tsunagu-roles")
        if not roles:
            return {}, {}
        role = next(r for r in ROLE_PREFERENCE if r in roles)
        path = {"partner_id": self.partner_id} if role == "partner" and self.partner_id else {}
        return {"Authorization": f"Bearer {self.tokens[role]}"}, path

    def run(self, schema) -> None:
        with requests.Session() as session:
            for result in schema.get_all_operations():
                operation = result.ok()
                headers, path = self.credentials(operation)
                known = {p.name: self.known[p.name] for p in operation.path_parameters if p.name in self.known}
                for mode, examples in REQUESTS_PER_OPERATION.items():
                    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
                    fixed = known | path if mode is GenerationMode.POSITIVE else path
                    self.send(operation, mode, examples, headers, fixed, checks, session)

    def send(self, operation, mode, examples, headers, path, checks, session) -> None:
        strategy = operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=path or None)

        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one(case) -> None:
            response = case.call(base_url=self.base_url, session=session, timeout=30)
            self.answers[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks)
            except (Failure, FailureGroup) as failure:  # all of them are reported, not only the first
                self.failures.append(f"{mode.value} {operation.label}: {str(failure)[:1500]}")

        try:
            one()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
            # An operation that takes nothing (no parameter, no body) has no invalid request.


@pytest.mark.parametrize("service", SERVICES)
async def test_generated_requests_get_only_the_answers_the_service_documents(
        service, service_process, token, auth_headers, consultation, producer, kafka_namespace):
    running = await service_process(service)
    tokens = {role: token(role) for role in ROLE_PREFERENCE} | {"partner": token("partner", partner_id=uuid4())}
    fuzzing = Fuzzing(running.url, tokens)
    if service == "partner-notification":
        registered = await register_a_partner(running.url, auth_headers("coordinator"))
        fuzzing.partner_id, tokens["partner"] = registered["partner_id"], registered["api_token"]
        fuzzing.known["partner_id"] = registered["partner_id"]
    if service == "intake":
        fuzzing.known = await a_registered_case(running.url, auth_headers("counter"), consultation())
    if service == "referral":
        fuzzing.known = await a_case_with_referrals(running, producer, kafka_namespace, auth_headers("coordinator"))
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")

    await asyncio.to_thread(fuzzing.run, schema)

    print(f"\n{service}: {fuzzing.answers.total()} generated requests, answered {dict(sorted(fuzzing.answers.items()))}, "
          f"{len(fuzzing.failures)} failure(s)")
    assert fuzzing.failures == [], "\n\n".join(fuzzing.failures)


async def register_a_partner(url: str, headers: dict[str, str]) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/v1/partners", headers=headers, json={
            "name": "ざまフードバンク", "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"},
            "webhook_url": "http://127.0.0.1:9/unused"})
    assert response.status_code == 201, response.text
    return response.json()


async def a_registered_case(url: str, headers: dict[str, str], body: dict) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/v1/consultations", headers=headers, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    return {"case_id": created["case_id"], "consent_id": created["consent_ids"][0]}


async def a_case_with_referrals(referral, producer, namespace: str, headers: dict[str, str]) -> dict[str, str]:
    """A consultation event as intake publishes it; the referral service opens its sheet and referrals."""
    event = ConsultationRegistered.model_validate(ConsultationRegistered.model_json_schema()["examples"][0])
    record = encode(event)
    await producer.send_and_wait(namespace + INTAKE_CASES.name, record.value, key=record.key, headers=record.headers)

    async def referrals() -> list:
        async with httpx.AsyncClient(base_url=referral.url, timeout=30) as client:
            response = await client.get(f"/v1/cases/{event.case_id}/referrals", headers=headers)
        return response.json()["referrals"] if response.status_code == 200 else []

    opened = await eventually(referrals, until=bool)
    return {"case_id": str(event.case_id), "referral_id": opened[0]["referral_id"]}


@pytest.fixture
async def producer(infrastructure):
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options,
                                enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()
