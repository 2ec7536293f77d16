"""Whatever bytes a record carries, `decode` answers with an event or a typed `DecodeError`, never
another exception: a consumer relies on that to send every undecodable record to its dead letters."""

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tsunagu_contracts import CATALOGUE, DecodeError, Envelope, decode, encode

EXAMPLES = [event_type.model_validate(event_type.model_json_schema()["examples"][0]) for event_type in CATALOGUE]
GOOD = encode(EXAMPLES[0])
HEADER_NAMES = [name for name, _ in GOOD.headers]
ATTRIBUTES = [name for name in HEADER_NAMES if name.startswith("ce_")] + ["content-type"]

header_names = st.sampled_from(HEADER_NAMES) | st.text(max_size=20)
any_headers = st.lists(st.tuples(header_names, st.binary(max_size=64)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


def decoded_or_refused(headers, value) -> Envelope | DecodeError:
    try:
        return decode(headers, value)
    except DecodeError as refused:
        return refused


@given(headers=any_headers, value=st.binary(max_size=256))
@example(headers=GOOD.headers, value=b"[" * 100_000)  # nested deeper than the JSON parser recurses
@example(headers=GOOD.headers, value=b"\xff\xfe")
def test_any_headers_and_value_give_an_event_or_a_typed_decode_error(headers, value):
    assert isinstance(decoded_or_refused(headers, value), Envelope | DecodeError)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record=st.sampled_from([encode(event) for event in EXAMPLES]), name=st.sampled_from(HEADER_NAMES),
       replacement=st.binary(max_size=64))
@example(record=GOOD, name="ce_type", replacement=b"\xff\xfe")
def test_one_header_of_a_good_record_replaced_by_any_bytes(record, name, replacement):
    headers = [(k, replacement if k == name else v) for k, v in record.headers]
    outcome = decoded_or_refused(headers, record.value)
    if isinstance(outcome, DecodeError):
        assert outcome.field, "the error names the header or field at fault"
    else:
        assert outcome.data == decode(record.headers, record.value).data


@given(headers=any_headers, value=st.binary(max_size=64), name=st.sampled_from(ATTRIBUTES))
def test_an_attribute_header_that_is_not_utf8_is_refused_naming_the_header(headers, value, name):
    earlier_bad = [k for k, v in headers if _attribute(k) and not _utf8(v)]
    outcome = decoded_or_refused(headers + [(name, b"\xff\xfe")], value)
    assert isinstance(outcome, DecodeError)
    if not earlier_bad:
        assert outcome.field == name


@given(value=st.binary(max_size=64), names=st.lists(st.text(max_size=12).filter(lambda n: not _attribute(n)),
                                                     max_size=4))
def test_headers_that_are_not_cloudevents_attributes_may_hold_any_bytes(value, names):
    headers = GOOD.headers + [(name, value) for name in names]
    assert decode(headers, GOOD.value).data == EXAMPLES[0]


@given(record=st.sampled_from([encode(event) for event in EXAMPLES]), data=json_values)
def test_json_that_is_not_the_declared_schema_is_invalid_data(record, data):
    outcome = decoded_or_refused(record.headers, json.dumps(data).encode())
    assert isinstance(outcome, DecodeError)
    assert outcome.field == "data" or outcome.field.startswith("data.")


@given(headers=any_headers, value=st.binary(max_size=64))
def test_records_without_the_cloudevents_headers_are_refused(headers, value):
    without = [(k, v) for k, v in headers if not k.lower().startswith("ce_")]
    outcome = decoded_or_refused(without, value)
    assert isinstance(outcome, DecodeError)
    assert outcome.field.startswith("ce_") or outcome.field == "content-type"


def _attribute(name: str) -> bool:
    """CloudEvents attributes travel as `ce_` headers and `content-type`; they must be text."""
    return name.lower().startswith("ce_") or name.lower() == "content-type"


def _utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True
