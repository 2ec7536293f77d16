"""Events on Kafka: the CloudEvents 1.0 Kafka protocol binding, binary content mode.

A record's value is the event data as JSON; its attributes travel as `ce_` headers; its key is the
case id, so records about one case stay in order. The W3C `traceparent` (and `tracestate`) travel
beside them. Encoding and decoding live here and nowhere else.

Decoding never returns a half-filled model: a record whose headers or value do not match its
declared type raises a `DecodeError` naming the header or the data field at fault, and no other
exception, whatever bytes the record holds (a consumer dead-letters it on that promise).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from tsunagu_contracts.events import EVENT_TYPES, Event
from tsunagu_contracts.ids import uuid7

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_URI = "urn:tsunagu:contracts:schema:{type}"
TRACE_HEADERS = ("traceparent", "tracestate")
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject")

E = TypeVar("E", bound=Event)
_time = TypeAdapter(AwareDatetime)


class DecodeError(ValueError):
    """A record that is not a valid Tsunagu event. `field` names the header or data field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingAttribute(DecodeError):
    """A required CloudEvents header is absent."""


class InvalidAttribute(DecodeError):
    """A CloudEvents header is present but its value is wrong."""


class UnknownEventType(DecodeError):
    """`ce_type` names no event in the catalogue, or not the one the consumer expects."""


class InvalidData(DecodeError):
    """The record value does not match the schema of its declared type."""


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """An event with the CloudEvents attributes it travelled with."""

    data: E
    id: UUID
    source: str
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def type(self) -> str:
        return self.data.type

    @property
    def subject(self) -> str:
        return str(self.data.case_id)


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def header_dict(self) -> dict[str, bytes]:
        return dict(self.headers)


def source_of(service: str) -> str:
    """`ce_source` of a service: a URI reference naming the producing context."""
    return f"/tsunagu/{service}"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(event: Event, *, source: str | None = None, event_id: UUID | None = None,
           traceparent: str | None = None, tracestate: str | None = None) -> KafkaRecord:
    """The Kafka record for an event. `event_id` defaults to a new time-ordered id."""
    headers = {
        "ce_specversion": SPECVERSION,
        "ce_id": str(event_id or uuid7()),
        "ce_source": source or source_of(event.producer),
        "ce_type": event.type,
        "ce_time": _rfc3339(event.occurred_at),
        "ce_subject": str(event.case_id),
        "ce_dataschema": SCHEMA_URI.format(type=event.type),
        "content-type": CONTENT_TYPE,
    }
    if traceparent:
        headers["traceparent"] = traceparent
        if tracestate:
            headers["tracestate"] = tracestate
    return KafkaRecord(
        key=str(event.case_id).encode(),
        value=event.model_dump_json().encode(),
        headers=[(k, v.encode()) for k, v in headers.items()],
    )


def _is_attribute(name: str) -> bool:
    return name.startswith("ce_") or name == "content-type"


def _text_headers(headers: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> dict[str, str]:
    """The headers decoding reads, as text. CloudEvents attributes must be UTF-8; a trace header that
    is not is dropped (tracing is best effort); other headers are not this binding's business."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower()
        if value is None or not (_is_attribute(name) or name in TRACE_HEADERS):
            continue  # a Kafka header may be null: an attribute without a value is absent
        try:
            out[name] = value.decode() if isinstance(value, bytes | bytearray) else str(value)
        except UnicodeDecodeError:
            if name in TRACE_HEADERS:
                out.pop(name, None)
                continue
            raise InvalidAttribute(name, "header value is not UTF-8") from None
    return out


def decode(headers: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]], value: bytes | str,
           expect: type[E] | tuple[type[E], ...] | None = None) -> Envelope[E]:
    """The event in a record, checked against its declared type; raises `DecodeError`."""
    h = _text_headers(headers)
    for name in REQUIRED:
        if not h.get(name):
            raise MissingAttribute(name, "required CloudEvents header is missing")
    if h["ce_specversion"] != SPECVERSION:
        raise InvalidAttribute("ce_specversion", f"expected {SPECVERSION}, got {h['ce_specversion']!r}")
    content_type = h.get("content-type", CONTENT_TYPE).split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise InvalidAttribute("content-type", f"expected {CONTENT_TYPE}, got {content_type!r}")
    event_type = EVENT_TYPES.get(h["ce_type"])
    if event_type is None:
        raise UnknownEventType("ce_type", f"{h['ce_type']!r} is not in the event catalogue")
    allowed = expect if isinstance(expect, tuple) else (expect,) if expect else None
    if allowed and event_type not in allowed:
        names = ", ".join(e.type for e in allowed)
        raise UnknownEventType("ce_type", f"expected {names}, got {h['ce_type']}")
    try:
        event_id = UUID(h["ce_id"])
    except ValueError:
        raise InvalidAttribute("ce_id", "is not a UUID") from None
    try:
        event_time = _time.validate_python(h["ce_time"])
    except ValidationError:
        raise InvalidAttribute("ce_time", "is not an RFC 3339 timestamp with a time zone") from None
    schema = h.get("ce_dataschema")
    if schema is not None and schema != SCHEMA_URI.format(type=event_type.type):
        raise InvalidAttribute("ce_dataschema", f"does not match {event_type.type}")

    if not isinstance(value, str | bytes | bytearray):
        raise InvalidData("data", f"record value is not JSON (a {type(value).__name__})")
    try:
        # Parsed and validated in one pass by pydantic's own JSON parser, which reads UTF-8 only
        # (RFC 8259 for JSON between systems). Fields added later inside this version are ignored,
        # so older consumers keep working; producers build events with unknown fields refused.
        data = event_type.model_validate_json(value, extra="ignore")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            if "recursion" in first["msg"]:
                raise InvalidData("data", "record value is nested too deeply") from None
            raise InvalidData("data", f"record value is not JSON ({first['msg']})") from None
        where = ".".join(str(p) for p in first["loc"]) or "data"
        raise InvalidData(f"data.{where}" if where != "data" else where, first["msg"]) from None

    if str(data.case_id) != h["ce_subject"]:
        raise InvalidAttribute("ce_subject", "does not match the case_id of the data")
    if event_time != data.occurred_at:
        raise InvalidAttribute("ce_time", "does not match occurred_at of the data")
    return Envelope(data=data, id=event_id, source=h["ce_source"],
                    traceparent=h.get("traceparent"), tracestate=h.get("tracestate"))
