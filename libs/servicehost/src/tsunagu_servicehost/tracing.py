"""A server span around every HTTP request, so a case's trace starts where the person was heard.

The span continues an incoming W3C `traceparent`; the outbox stores the context current inside
the request, and the relay and the next service's consumer continue it. Span names and
attributes carry the route template, the ids in the path and the status: no other path values,
no query strings, no bodies. Each request has an id (the caller's `X-Request-ID` when it is a
plain token, else a new one), answered in the same header and carried by every log line written
while the request is handled.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tsunagu_telemetry import id_attributes, log_fields

_propagator = TraceContextTextMapPropagator()
UNTRACED = {"/healthz", "/readyz", "/metrics"}
# A request id is copied into logs: anything but a short plain token is replaced, never logged.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def install_request_tracing(app: FastAPI, provider: TracerProvider, service: str) -> None:
    app.add_middleware(RequestTracing, tracer=provider.get_tracer(f"tsunagu.{service}.http"))


class RequestTracing:
    """A plain ASGI middleware (Starlette's `BaseHTTPMiddleware` runs each request through a task
    group and memory streams, which cost a good part of a short request's CPU)."""

    def __init__(self, app: ASGIApp, tracer: Tracer):
        self.app, self.tracer = app, tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        parent = _propagator.extract(dict(headers))
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        method = scope["method"]
        status: list[int] = []

        async def answered(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        with (self.tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as span,
              log_fields(request_id=request_id)):
            try:
                await self.app(scope, receive, answered)
            finally:
                template = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {template}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", template)
                # The ids in the path (case, referral, partner, support) by name, as every span names them.
                span.set_attributes(id_attributes(SimpleNamespace(**scope.get("path_params", {}))))
                code = status[0] if status else 500  # nothing answered: the error handlers' 500
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))


@contextmanager
def continue_trace(tracer: Tracer, traceparent: str | None, name: str, attributes: dict[str, str]) -> Iterator[None]:
    """Run the block in a span of the trace `traceparent` names (a case's, stored with a row), linked
    to the current span (the request that caused it): a partner's answer, days later, and the
    events it causes join the case's trace. Without a traceparent the block runs in a plain child span."""
    current = trace.get_current_span().get_span_context()
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    links = [trace.Link(current)] if parent is not None and current.is_valid else None
    with tracer.start_as_current_span(name, context=parent, links=links, attributes=attributes):
        yield
