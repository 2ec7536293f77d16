"""A server span around every HTTP request, so a case's trace starts where the person was heard.

The span continues an incoming W3C `traceparent`; the outbox stores the context current inside
the request, and the relay and the next service's consumer continue it. Span names and
attributes carry the route template and status only: no path values, no bodies.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
UNTRACED = {"/healthz", "/readyz", "/metrics"}


def install_request_tracing(app: FastAPI, provider: TracerProvider, service: str) -> None:
    tracer = provider.get_tracer(f"tsunagu.{service}.http")

    @app.middleware("http")
    async def trace_request(request: Request, call_next):
        if request.url.path in UNTRACED:
            return await call_next(request)
        parent = _propagator.extract(dict(request.headers))
        with tracer.start_as_current_span(request.method, context=parent, kind=SpanKind.SERVER) as span:
            response = await call_next(request)
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            span.update_name(f"{request.method} {template}")
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("http.route", template)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response
