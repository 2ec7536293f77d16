"""Operations follow one case as one trace: from the counter's request, through the outbox and
Kafka, into the referral service and back. No personal data in any span."""

import asyncio

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack


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
    for span in spans_of(otlp):
        for text in (span["name"], *map(str, span["attributes"].values())):
            assert "座間" not in text and "ざま" not in text
