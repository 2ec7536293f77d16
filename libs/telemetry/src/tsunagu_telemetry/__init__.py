"""OpenTelemetry for Tsunagu services: one tracer provider per process, passed explicitly.

Spans carry ids and codes only; personal data never goes into attributes.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracer_provider(service_name: str, otlp_endpoint: str | None = None) -> TracerProvider:
    """A tracer provider named for the service; exports over OTLP/HTTP when an endpoint is given.

    Without an endpoint spans are still created (trace context still travels in Kafka headers)
    but nothing is exported.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                        "service.namespace": "tsunagu"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")))
    return provider


__all__ = ["tracer_provider"]
