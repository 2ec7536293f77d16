"""The personal-data scanner every end-to-end test runs when its services stop (the
`service_process` fixture) catches a sample person planted in a log line, a Kafka record or a span,
says where, and never prints the personal data itself."""

import json
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tsunagu_contracts import INTAKE_CASES
from tsunagu_teststack.people import HANAKO
from tsunagu_teststack.pii import PersonalDataScanner, namespace_records, otlp_spans, report

scanner = PersonalDataScanner()
FULL_VALUES = [HANAKO.name, HANAKO.name_kana, HANAKO.phone, HANAKO.address, HANAKO.birth_date.isoformat()]


def assert_report_hides_the_data(text: str) -> None:
    for value in [*FULL_VALUES, HANAKO.name.replace(" ", ""), HANAKO.phone.replace("-", "")]:
        assert value not in text


def test_a_name_planted_in_a_log_line_is_found_with_its_file_and_line(tmp_path):
    log = tmp_path / "intake-1234.log"
    log.write_text(json.dumps({"level": "INFO", "message": "registered"}) + "\n"
                   + json.dumps({"level": "INFO", "message": f"registered {HANAKO.name}"}, ensure_ascii=True) + "\n")

    hits = scanner.scan_log(log)

    assert "intake-1234.log line 2: the name of sample person 1" in {str(h) for h in hits}
    assert {h.where for h in hits} == {"intake-1234.log line 2"}
    assert_report_hides_the_data(report(hits))


@pytest.mark.parametrize(("what", "text"), [
    ("name", "座間花子"), ("given name", "花子さん"), ("kana", "ザマ ハナコ"), ("kana", "ざまはなこ"),
    ("birth date", "1968/4/2"), ("birth date", "19680402"), ("birth date", "昭和43年4月2日"),
    ("phone", "0460000000"), ("phone", "tel:046-000-0000"), ("address", "緑ケ丘 座間市緑ケ丘9丁目9番9号"),
])
def test_each_item_is_found_in_the_forms_a_leak_takes(what, text):
    assert what in {h.what for h in scanner.scan("somewhere", text)}


def test_the_city_s_own_name_and_codes_are_not_personal_data():
    assert scanner.scan("somewhere", "座間市 142166 tsunagu.intake.consultation-registered.v1 ざまフードバンク") == []


def test_a_kana_in_a_kafka_header_and_a_phone_in_a_value_are_found_with_their_record():
    record = SimpleNamespace(topic="test-1.tsunagu.intake.cases.v1", partition=0, offset=7, key=b"case-1",
                             headers=[("ce_subject", HANAKO.name_kana.encode())],
                             value=json.dumps({"note": HANAKO.phone.replace("-", "")}).encode())

    hits = scanner.scan_record(record)

    assert {str(h) for h in hits} == {
        "Kafka test-1.tsunagu.intake.cases.v1[0]@7 header ce_subject: the kana of sample person 1",
        "Kafka test-1.tsunagu.intake.cases.v1[0]@7 value: the phone of sample person 1"}
    assert_report_hides_the_data(report(hits))


def test_a_birth_date_in_a_span_attribute_is_found_with_its_span():
    export = ExportTraceServiceRequest()
    resource = export.resource_spans.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="intake")))
    span = resource.scope_spans.add().spans.add()
    span.name = "POST /v1/consultations"
    span.attributes.append(KeyValue(key="person.birth", value=AnyValue(string_value="1968-04-02")))

    hits = scanner.scan_spans(otlp_spans([export.SerializeToString()]))

    assert [str(h) for h in hits] == [
        "span intake/POST /v1/consultations attribute person.birth: the birth date of sample person 1"]


@pytest.mark.stack
async def test_a_name_planted_on_a_test_s_topic_is_caught_by_the_scan_of_its_namespace(infrastructure,
                                                                                        kafka_namespace):
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, b'{"case_id": "x"}', key=b"a")
        await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, HANAKO.name.encode(), key=b"b")
    finally:
        await producer.stop()

    records = await namespace_records(infrastructure.kafka_bootstrap, kafka_namespace,
                                      options=infrastructure.kafka_options)
    hits = [hit for record in records for hit in scanner.scan_record(record)]

    assert len(records) == 2
    assert "name" in {h.what for h in hits}
    assert all(h.where.endswith(" value") and f"{kafka_namespace}{INTAKE_CASES.name}" in h.where for h in hits)
