"""Operations follow one case as one trace: from the counter's request, through the outbox and
Kafka, into the referral service, to the partner's webhook and back. No personal data in any span."""

import asyncio
import uuid

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.traces import Jaeger, Span
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
PERSON = {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02", "phone": "046-000-0000"}
REQUESTED = "tsunagu.referral.requested.v1"
ACCEPTED = "tsunagu.referral.accepted.v1"


def spans_of(receiver: Receiver) -> list[dict]:
    spans = []
    for request in receiver.received:
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append({"service": service, "name": span.name, "trace": span.trace_id.hex(),
                                  "attributes": {a.key: a.value for a in span.attributes}})
    return spans


async def test_a_consultation_is_one_trace_across_intake_and_referral(service_process, auth_headers, consultation):
    async with ReceiverServer() as collector:
        otlp = Receiver()
        collector.add("v1/traces", otlp)
        telemetry = {"TSUNAGU_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", "OTEL_BSP_SCHEDULE_DELAY": "200"}
        intake = await service_process("intake", extra_env=telemetry)
        await service_process("referral", extra_env=telemetry)
        async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
            created = await client.post("/v1/consultations", json=consultation(), headers=auth_headers("counter"))
        assert created.status_code == 201

        def request_trace() -> str | None:
            return next((s["trace"] for s in spans_of(otlp) if s["name"] == "POST /v1/consultations"), None)

        trace = await eventually(lambda: asyncio.sleep(0, request_trace()), until=bool)
        in_trace = await eventually(
            lambda: asyncio.sleep(0, [s for s in spans_of(otlp) if s["trace"] == trace]),
            until=lambda spans: {("referral", "process"), ("intake", "process")} <= {
                (s["service"], s["name"].rsplit(" ", 1)[-1]) for s in spans})

    assert {s["service"] for s in in_trace} == {"intake", "referral"}
    assert_no_personal_data(span["name"] for span in spans_of(otlp))
    assert_no_personal_data(str(value) for span in spans_of(otlp) for value in span["attributes"].values())


def assert_no_personal_data(texts) -> None:
    for text in texts:
        for value in ("座間", "花子", "ざま", "はなこ", "046-000-0000", "1968"):
            assert value not in text, f"personal data in a span: {text!r}"


async def test_a_consultation_is_one_trace_in_jaeger_from_the_counter_to_the_partners_webhook(
        service_process, auth_headers, jaeger: Jaeger):
    telemetry = {"TSUNAGU_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    intake = await service_process("intake", extra_env=telemetry)
    referral, partners = await asyncio.gather(
        service_process("referral", extra_env=telemetry),
        service_process("partner-notification", extra_env=telemetry | {
            "TSUNAGU_PARTNERS_INTAKE_URL": intake.url, "TSUNAGU_PARTNERS_RETRY_SCHEDULE_S": "[0.2, 0.2]"}))

    async def call(service, method: str, path: str, headers: dict, **kw) -> dict:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            response = await client.request(method, path, headers=headers, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()

    async with ReceiverServer() as server:
        webhook = Receiver(answers=[503, 200])  # the first send fails: its retry is in the trace too
        food_bank = await call(partners, "POST", "/v1/partners", auth_headers("coordinator"), json={
            "name": "ざまフードバンク", "need_categories": ["no_food"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"},
            "webhook_url": server.add("food", webhook)})
        partner_id = food_bank["partner_id"]
        await call(referral, "PUT", "/v1/routing/no_food", auth_headers("coordinator"),
                   json={"candidates": [{"kind": "partner", "partner_id": partner_id}]})
        case = await call(intake, "POST", "/v1/consultations", auth_headers("counter") | {
            "Idempotency-Key": str(uuid.uuid4())}, json={
            "person": PERSON, "counter": "self_reliance", "channel": "counter", "urgency": "high",
            "needs": ["no_food"], "primary_need": "no_food",
            "consents": [{"recipient": {"kind": "partner", "partner_id": partner_id}, "purpose": "referral",
                          "method": "written"}]})
        requested = await eventually(lambda: asyncio.sleep(0, webhook.of_type(REQUESTED)), until=bool)
        referral_id = requested[0].event["data"]["referral_id"]
        await call(partners, "POST", f"/v1/partners/{partner_id}/referrals/{referral_id}/responses",
                   {"Authorization": f"Bearer {food_bank['api_token']}"}, json={"response": "accepted"})
        await eventually(lambda: asyncio.sleep(0, webhook.of_type(ACCEPTED)), until=bool)

    # The trace the counter's request started, as Jaeger has it once every hop has reported: every
    # webhook sent for the case (the consent's notice, the referral, the retry, the acceptance) and
    # the partner's answer, with the referral change it caused, are in it.
    def complete(spans: list[Span]) -> bool:
        return ("intake", "POST /v1/consultations") in {(s.service, s.name) for s in spans} \
            and sum(s.name == "webhook POST" for s in spans) == len(webhook.received) \
            and any(s.attributes.get("tsunagu.event_type") == ACCEPTED for s in spans if s.name == "webhook POST")

    async def case_trace() -> list[Span]:
        found = await jaeger.find("partner-notification", **{"tsunagu.case_id": case["case_id"]})
        return await jaeger.trace(found[0][0].trace_id) if found else []

    spans = await eventually(case_trace, until=complete)
    trace_id = spans[0].trace_id
    assert {s.service for s in spans} >= {"intake", "referral", "partner-notification"}
    consumed = {(s.service, s.attributes.get("tsunagu.event_type")) for s in spans if s.name.endswith(" process")}
    assert ("referral", "tsunagu.intake.consultation-registered.v1") in consumed
    assert ("partner-notification", REQUESTED) in consumed
    assert ("referral", "tsunagu.partners.responded.v1") in consumed, "the partner's answer joins the case's trace"
    assert ("partner-notification", ACCEPTED) in consumed, "and so does the referral change it causes"
    sends = [s for s in spans if s.name == "webhook POST"]
    assert {s.attributes["tsunagu.partner_id"] for s in sends} == {partner_id}
    assert REQUESTED in {s.attributes["tsunagu.event_type"] for s in sends}
    assert "2" in {s.attributes["tsunagu.attempt"] for s in sends}, "the retry is a span of the case's trace"
    for service in ("intake", "referral", "partner-notification"):
        traces = await jaeger.find(service, **{"tsunagu.case_id": case["case_id"]})
        assert {t[0].trace_id for t in traces} == {trace_id}, f"{service}: the case is one trace"

    everything = [s for service in ("intake", "referral", "partner-notification")
                  for trace in await jaeger.find(service) for s in trace]
    assert_no_personal_data(s.name for s in everything)
    assert_no_personal_data(value for s in everything for value in s.attributes.values())
