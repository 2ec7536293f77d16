"""OpenTelemetry for Tsunagu services: one tracer provider per process, passed explicitly, and
logs as JSON lines that carry the current trace and span ids.

Spans carry ids and codes only; personal data never goes into attributes.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tsunagu_telemetry.logs import JsonLines, configure_logging, log_fields

ID_FIELDS = ("case_id", "referral_id", "partner_id", "support_id", "tenancy_id", "delivery_id", "need",
             "primary_need")
"""The fields that become span attributes, by name: a field added later with a person's data in it
never becomes one by accident."""


def id_attributes(source: object) -> dict[str, str]:
    """`tsunagu.<field>` attributes for the ids and codes that `source` (an event, a row) has."""
    found = {name: getattr(source, name, None) for name in ID_FIELDS}
    return {f"tsunagu.{name}": str(getattr(value, "value", value)) for name, value in found.items() if value is not None}


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


__all__ = ["ID_FIELDS", "JsonLines", "configure_logging", "id_attributes", "log_fields", "tracer_provider"]
