"""Events on the wire follow the CloudEvents Kafka binding, binary mode, as the CloudEvents SDK reads it."""

import json
import uuid

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent

from tsunagu_contracts import CATALOGUE, ConsultationRegistered, ReferralAccepted, decode, encode, uuid7
from tsunagu_contracts.wire import InvalidAttribute, InvalidData, MissingAttribute, UnknownEventType

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def an_event(event_type=ConsultationRegistered):
    return event_type.model_validate(event_type.model_json_schema()["examples"][0])


@pytest.mark.parametrize("event_type", CATALOGUE, ids=lambda e: e.__name__)
def test_every_event_survives_the_round_trip(event_type):
    event = an_event(event_type)
    record = encode(event, traceparent=TRACEPARENT)
    envelope = decode(record.headers, record.value)
    assert envelope.data == event
    assert envelope.traceparent == TRACEPARENT
    assert record.key == str(event.case_id).encode()


def test_the_cloudevents_sdk_reads_our_records_as_we_meant_them():
    event = an_event()
    event_id = uuid7()
    record = encode(event, event_id=event_id)

    sdk = from_binary_event(KafkaMessage(headers=record.header_dict(), key=record.key, value=record.value))

    assert sdk.get_specversion() == "1.0"
    assert sdk.get_id() == str(event_id)
    assert sdk.get_type() == "tsunagu.intake.consultation-registered.v1"
    assert sdk.get_source() == "/tsunagu/intake"
    assert sdk.get_subject() == str(event.case_id)
    assert sdk.get_time() == event.occurred_at
    assert sdk.get_datacontenttype() == "application/json"
    assert sdk.get_dataschema() == "urn:tsunagu:contracts:schema:tsunagu.intake.consultation-registered.v1"
    assert sdk.get_extension("partitionkey") == str(event.case_id), "the record key is the case id"
    assert sdk.get_data() == json.loads(event.model_dump_json())


def test_we_read_records_the_cloudevents_sdk_writes():
    event = an_event(ReferralAccepted)
    attributes = {"specversion": "1.0", "type": event.type, "source": "/tsunagu/referral", "id": str(uuid7()),
                  "time": event.occurred_at, "subject": str(event.case_id), "datacontenttype": "application/json"}
    message = to_binary_event(CloudEvent(attributes, json.loads(event.model_dump_json())))

    envelope = decode(message.headers, message.value, expect=ReferralAccepted)

    assert envelope.data == event
    assert str(envelope.id) == attributes["id"]


def test_event_ids_are_time_ordered_uuid7():
    ids = [uuid7() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)


def record_with(**changes):
    record = encode(an_event())
    headers = record.header_dict()
    value = changes.pop("value", record.value)
    for name, new in changes.items():
        if new is None:
            headers.pop(name)
        else:
            headers[name] = new.encode()
    return headers, value


@pytest.mark.parametrize(("change", "error", "field"), [
    ({"ce_type": None}, MissingAttribute, "ce_type"),
    ({"ce_id": None}, MissingAttribute, "ce_id"),
    ({"ce_specversion": "0.3"}, InvalidAttribute, "ce_specversion"),
    ({"ce_type": "tsunagu.intake.unknown.v1"}, UnknownEventType, "ce_type"),
    ({"ce_id": "not-a-uuid"}, InvalidAttribute, "ce_id"),
    ({"ce_time": "yesterday"}, InvalidAttribute, "ce_time"),
    ({"ce_subject": str(uuid.uuid4())}, InvalidAttribute, "ce_subject"),
    ({"content-type": "text/plain"}, InvalidAttribute, "content-type"),
    ({"value": b"{not json"}, InvalidData, "data"),
    ({"value": encode(an_event()).value.decode().encode("utf-16")}, InvalidData, "data"),
    ({"value": b"[" * 100_000}, InvalidData, "data"),
    ({"ce_type": "tsunagu.referral.accepted.v1", "ce_dataschema": None}, InvalidData, "data.referral_id"),
    ({"ce_dataschema": "urn:tsunagu:contracts:schema:other.v1"}, InvalidAttribute, "ce_dataschema"),
])
def test_a_record_that_does_not_match_its_declared_type_is_a_clear_typed_error(change, error, field):
    headers, value = record_with(**change)
    with pytest.raises(error) as raised:
        decode(headers, value)
    assert raised.value.field == field


def test_a_bad_field_inside_the_data_is_named_with_its_path():
    data = json.loads(encode(an_event()).value)
    data["needs"] = ["housing", "rent"]
    headers, _ = record_with()
    with pytest.raises(InvalidData) as raised:
        decode(headers, json.dumps(data).encode())
    assert raised.value.field == "data.needs.1"


def test_a_consumer_expecting_one_type_refuses_another():
    record = encode(an_event())
    with pytest.raises(UnknownEventType, match="expected tsunagu.referral.accepted.v1"):
        decode(record.headers, record.value, expect=ReferralAccepted)


def test_a_field_added_later_in_the_same_version_does_not_break_an_older_consumer():
    record = encode(an_event())
    data = json.loads(record.value) | {"added_in_a_later_release": "x"}
    assert decode(record.headers, json.dumps(data).encode()).data == an_event()
