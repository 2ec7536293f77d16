"""Everything under contracts/ that is generated from the code: schemas, examples, AsyncAPI 3."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic.json_schema import models_json_schema

from tsunagu_contracts import CATALOGUE, DEAD_LETTERS, EVENT_TOPICS, PartnerDeliveries, Topic
from tsunagu_contracts.wire import CONTENT_TYPE, SCHEMA_URI, SPECVERSION

KAFKA_BINDING = "0.5.0"


def event_schema(event) -> dict:
    schema = event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_URI.format(type=event.type)
    schema["x-event-type"] = event.type
    schema["x-producer"] = event.producer
    return schema


def _dump_json(data) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def cloudevents_headers_schema(event_type: str) -> dict:
    """The `ce_` headers a record of this type carries: the shared ones, with its own `ce_type`."""
    return {"allOf": [
        {"$ref": "#/components/schemas/CloudEventHeaders"},
        {"type": "object", "properties": {
            "ce_type": {"type": "string", "const": event_type},
            "ce_dataschema": {"type": "string", "const": SCHEMA_URI.format(type=event_type)}}},
    ]}


def shared_headers_schema() -> dict:
    """CloudEvents Kafka binding, binary mode: attributes as `ce_` headers, W3C trace context beside them."""
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPECVERSION},
            "ce_id": {"type": "string", "format": "uuid", "description": "Event id (UUIDv7); consumers dedupe on it."},
            "ce_source": {**text, "description": "Producing service, e.g. /tsunagu/intake."},
            "ce_type": {**text, "description": "Event type with its version, e.g. tsunagu.referral.accepted.v1."},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "format": "uuid", "description": "The case id (also the record key)."},
            "ce_dataschema": {**text, "description": "URN of the event type's JSON Schema."},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {**text, "description": "W3C Trace Context."},
            "tracestate": {**text, "description": "W3C Trace Context."},
        },
    }


def _channel_id(topic: Topic | str) -> str:
    name = topic if isinstance(topic, str) else topic.name
    return name.replace(".", "-").replace("{", "").replace("}", "")


def _operation_id(service: str, action: str, channel_id: str) -> str:
    words = (service + "-" + action + "-" + channel_id).split("-")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def _ref_siblings_kept(schema):
    """`{"$ref": …, "description": …}` as `{"allOf": [{"$ref": …}], "description": …}`.

    An AsyncAPI Schema Object follows JSON Schema draft-07, where keywords beside a `$ref` are
    ignored: the parser and the HTML documentation would show the code list's description in place
    of the field's own. Inside `allOf` the reference keeps its meaning and the field its words.
    """
    if isinstance(schema, list):
        return [_ref_siblings_kept(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {key: _ref_siblings_kept(value) for key, value in schema.items()}
    if "$ref" in kept and len(kept) > 1:
        return {"allOf": [{"$ref": kept.pop("$ref")}], **kept}
    return kept


def asyncapi_document() -> dict:
    _, definitions = models_json_schema([(e, "validation") for e in CATALOGUE],
                                        ref_template="#/components/schemas/{model}")
    schemas = {name: _ref_siblings_kept(schema) for name, schema in sorted(definitions.get("$defs", {}).items())}
    schemas["CloudEventHeaders"] = shared_headers_schema()
    messages = {}
    for event in CATALOGUE:
        messages[event.__name__] = {
            "name": event.type,
            "title": event.__name__,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "headers": cloudevents_headers_schema(event.type),
            "payload": {"$ref": f"#/components/schemas/{event.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string", "format": "uuid", "description": "case_id"},
                                   "bindingVersion": KAFKA_BINDING}},
            "examples": [{"name": f"example{i + 1}", "payload": example}
                         for i, example in enumerate(event.model_json_schema().get("examples", []))],
        }

    channels: dict = {}
    operations: dict = {}

    def add_channel(topic: Topic, address: str, parameters: dict | None = None) -> str:
        cid = _channel_id(address)
        channel = {
            "address": address,
            "description": topic.description,
            "messages": {e.__name__: {"$ref": f"#/components/messages/{e.__name__}"} for e in topic.events},
            "bindings": {"kafka": {
                "topic": address,
                "partitions": topic.partitions,
                "topicConfiguration": {"retention.ms": topic.retention_ms, "cleanup.policy": ["delete"]},
                "bindingVersion": KAFKA_BINDING,
            }},
        }
        if parameters:
            channel["parameters"] = parameters
        channels[cid] = channel
        for service in topic.producers:
            operations[_operation_id(service, "send", cid)] = {
                "action": "send", "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{service} publishes to {address}",
                "messages": [{"$ref": f"#/channels/{cid}/messages/{e.__name__}"} for e in topic.events],
            }
        for service in topic.consumers:
            if service in ("operations",) or service.startswith("partner "):
                continue
            operations[_operation_id(service, "receive", cid)] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{service} consumes {address}",
                "messages": [{"$ref": f"#/channels/{cid}/messages/{e.__name__}"} for e in topic.events],
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [f"tsunagu-{service}"]},
                                       "bindingVersion": KAFKA_BINDING}},
            }
        return cid

    for topic in EVENT_TOPICS:
        add_channel(topic, topic.name)
    for topic in DEAD_LETTERS:
        cid = add_channel(topic, topic.name)
        channels[cid]["description"] += (" The value and key are the original record's; headers add "
                                         "`x-dlq-error`, `x-dlq-attempts`, `x-dlq-topic`, `x-dlq-partition`, "
                                         "`x-dlq-offset` and `x-dlq-consumer`.")
    example_partner = PartnerDeliveries.for_partner("00000000-0000-0000-0000-000000000000")
    add_channel(example_partner, PartnerDeliveries.ADDRESS, parameters={
        "partner_id": {"description": "The partner's id; `tsunagu.partner.<partner_id>.` is its ACL prefix."}})

    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "Tsunagu events",
            "version": "1.0.0",
            "description": ("Events between Tsunagu's services and Team Zama partners. Records follow the "
                            "CloudEvents 1.0 Kafka binding in binary mode: attributes in `ce_` headers, the "
                            "event data as the JSON value, the case id as the key. No personal data."),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "`make run` on one machine"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> dict[str, str]:
    """Every generated file, by path relative to contracts/."""
    files = {}
    for event in CATALOGUE:
        files[f"schemas/{event.type}.json"] = _dump_json(event_schema(event))
        for i, example in enumerate(event.model_json_schema().get("examples", []), start=1):
            files[f"examples/{event.type}/{i}.json"] = _dump_json(example)
    files["asyncapi.yaml"] = ("# Generated from tsunagu_contracts by `make contracts`; do not edit.\n"
                              + yaml.safe_dump(asyncapi_document(), allow_unicode=True, sort_keys=False, width=110))
    return files


def write(contracts_dir: Path) -> list[str]:
    """Writes the generated files, removes stale ones; returns what changed."""
    files = render()
    changed = []
    for generated_dir in ("schemas", "examples"):
        for path in (contracts_dir / generated_dir).rglob("*.json") if (contracts_dir / generated_dir).exists() else []:
            rel = path.relative_to(contracts_dir).as_posix()
            if rel not in files:
                path.unlink()
                changed.append(f"removed {rel}")
    for rel, text in files.items():
        path = contracts_dir / rel
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(rel)
    return changed
