"""Operations follow one case as one trace: from the counter's request, through the outbox and
Kafka, into the referral service, to the partner's webhook and back. No personal data in any span.
Jaeger serves the trace viewer (deploy/trace-viewer/) at its root, and the viewer's own API calls
find the case's trace."""

import asyncio
import json
import re
import uuid

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.traces import Jaeger, Span
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
PERSON = {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02", "phone": "046-000-0000"}
REGISTERED = "tsunagu.intake.consultation-registered.v1"
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
            until=lambda spans: {("referral", "process"), ("intake", "process"), ("intake", REGISTERED)} <= {
                (s["service"], s["name"].rsplit(" ", 1)[-1]) for s in spans})

    assert {s["service"] for s in in_trace} == {"intake", "referral"}
    assert f"outbox relay {REGISTERED}" in {s["name"] for s in in_trace if s["service"] == "intake"}, \
        "the outbox row's publish is a span of the request's trace"
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
            "TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url, "TSUNAGU_PARTNERS_RETRY_SCHEDULE_S": "[0.2, 0.2]"}))

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
        # The receiver stays up until the delivery it refused first has been sent again.
        await eventually(lambda: asyncio.sleep(0, [r.headers["webhook-id"] for r in webhook.received]),
                         until=lambda ids: len(ids) > len(set(ids)))

    # The trace the counter's request started, as Jaeger has it once every hop has reported: every
    # webhook sent for the case (the consent's notice, the referral, the retry, the acceptance) and
    # the partner's answer, with the referral change it caused, are in it.
    def complete(spans: list[Span]) -> bool:
        return ("intake", "POST /v1/consultations") in {(s.service, s.name) for s in spans} \
            and sum(s.name == "webhook POST" for s in spans) == len(webhook.received) \
            and any(s.attributes.get("tsunagu.event_type") == ACCEPTED for s in spans if s.name == "webhook POST") \
            and "2" in {s.attributes.get("tsunagu.attempt") for s in spans if s.name == "webhook POST"}

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

    await assert_the_viewer_finds_the_case(jaeger, case["case_id"], trace_id)


async def assert_the_viewer_finds_the_case(jaeger: Jaeger, case_id: str, trace_id: str) -> None:
    """The calls deploy/trace-viewer/static/viewer.js makes, with its default lookback and limit, and
    the fields it reads from their answers."""
    async with httpx.AsyncClient(base_url=jaeger.ui, timeout=10) as client:
        async def get(path: str, **params: str) -> dict:
            response = await client.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        services = (await get("/api/services"))["data"]
        assert {"intake", "referral", "partner-notification"} <= set(services)
        assert "webhook POST" in (await get("/api/services/partner-notification/operations"))["data"]

        # "All services" with only the case id: one search per service, merged by trace id.
        case_tag = json.dumps({"tsunagu.case_id": case_id})
        found = [trace for service in services
                 for trace in (await get("/api/traces", service=service, tags=case_tag, lookback="1h",
                                         limit="20"))["data"] or []]
        assert {trace["traceID"] for trace in found} == {trace_id}

        opened = (await get(f"/api/traces/{trace_id}"))["data"]
    assert [trace["traceID"] for trace in opened] == [trace_id]
    trace = opened[0]
    spans = {span["spanID"]: span for span in trace["spans"]}
    for span in spans.values():
        assert span["traceID"] == trace_id
        assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
        assert trace["processes"][span["processID"]]["serviceName"] in services
        assert all({"key", "value"} <= tag.keys() for tag in span["tags"])
        assert all({"refType", "traceID", "spanID"} <= ref.keys() for ref in span["references"])

    def parent(span: dict) -> dict | None:
        return next((spans[ref["spanID"]] for ref in span["references"]
                     if ref["refType"] == "CHILD_OF" and ref["traceID"] == trace_id), None)

    # The waterfall's tree: one root, the counter's request, and every other span under it.
    roots = [span for span in spans.values() if parent(span) is None]
    assert [(trace["processes"][r["processID"]]["serviceName"], r["operationName"]) for r in roots] == [
        ("intake", "POST /v1/consultations")]
    assert any(tag["key"] == "tsunagu.case_id" and tag["value"] == case_id
               for span in spans.values() for tag in span["tags"])


async def test_jaeger_serves_the_trace_viewer_at_its_root(jaeger: Jaeger):
    async with httpx.AsyncClient(base_url=jaeger.ui, timeout=10) as client:
        page, deep_link, script, style = await asyncio.gather(
            client.get("/"), client.get("/trace/4bf92f3577b34da6a3ce929d0e0e4736"),
            client.get("/static/viewer.js"), client.get("/static/viewer.css"))
    for response in (page, deep_link, script, style):
        assert response.status_code == 200, response.request.url
    assert page.headers["content-type"].startswith("text/html")
    assert deep_link.text == page.text, "Jaeger answers its UI's own paths with the viewer's page"
    assert '<html lang="ja">' in page.text
    assert re.search(r"<title>トレース検索[^<]*</title>", page.text)
    assert '<script src="static/viewer.js"' in page.text and 'href="static/viewer.css"' in page.text
    assert "javascript" in script.headers["content-type"] and style.headers["content-type"].startswith("text/css")
    for path in ("api/services", "/operations", "api/traces"):
        assert path in script.text
    for text in (page.text, script.text, style.text):
        assert not re.search(r"""(src|href|url|import)\s*[=(]\s*["']?(https?:)?//""", text), \
            "the viewer loads nothing from elsewhere"
