"""Every request but the probes is a server span named for its route, with its ids and its status."""

from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tsunagu_servicehost.tracing import install_request_tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/v1/cases/{case_id}")
    async def case(case_id: str):
        return {"case_id": case_id}

    @app.get("/healthz")
    async def healthz():
        return {}

    @app.get("/broken")
    async def broken():
        raise RuntimeError("a bug")

    install_request_tracing(app, provider, "test")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://service")
    return client, exporter


async def test_a_request_is_a_span_named_for_its_route_with_the_ids_of_its_path(traced):
    client, exporter = traced
    case_id = str(uuid4())
    answer = await client.get(f"/v1/cases/{case_id}?name=secret", headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /v1/cases/{case_id}"
    assert span.context.trace_id == int(TRACEPARENT.split("-")[1], 16)  # continues the caller's trace
    assert span.attributes["http.route"] == "/v1/cases/{case_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["tsunagu.case_id"] == case_id
    assert "secret" not in str(dict(span.attributes))


async def test_a_plain_request_id_is_answered_back_and_anything_else_is_replaced(traced):
    client, _ = traced
    kept = await client.get("/v1/cases/x", headers={"X-Request-ID": "counter-7.abc"})
    assert kept.headers["X-Request-ID"] == "counter-7.abc"
    replaced = await client.get("/v1/cases/x", headers={"X-Request-ID": "<script>" * 3})
    assert replaced.headers["X-Request-ID"] != "<script>" * 3
    assert len(replaced.headers["X-Request-ID"]) == 32


async def test_a_request_that_fails_is_an_error_span_with_status_500(traced):
    client, exporter = traced
    answer = await client.get("/broken")
    assert answer.status_code == 500
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /broken"
    assert span.attributes["http.response.status_code"] == 500
    assert span.status.status_code is StatusCode.ERROR


async def test_the_probes_are_not_traced(traced):
    client, exporter = traced
    assert (await client.get("/healthz")).status_code == 200
    assert exporter.get_finished_spans() == ()
