"""A log line is one JSON object that says when, how bad, which service and which trace."""

import io
import json
import logging
from datetime import datetime

from opentelemetry.sdk.trace import TracerProvider

from tsunagu_telemetry import JsonLines, log_fields


def logged(emit) -> list[dict]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines("referral"))
    log = logging.getLogger("tsunagu.test.json-lines")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        emit(log)
    finally:
        log.removeHandler(handler)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_inside_a_span_carries_its_trace_and_span_ids():
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("consume") as span:
        [line] = logged(lambda log: log.warning("referral %s overdue", "r-1"))
    context = span.get_span_context()

    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert (line["level"], line["service"], line["message"]) == ("WARNING", "referral", "referral r-1 overdue")
    assert line["time"].endswith("Z") and datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0


def test_a_line_outside_any_span_has_no_trace_ids():
    [line] = logged(lambda log: log.info("started"))
    assert "trace_id" not in line and "span_id" not in line


def test_ids_bound_for_an_event_or_request_are_on_every_line_and_one_line_stays_one_line():
    with log_fields(event_id="0192f0c1-7a2e-7cc3-9a41-00000000aaaa", event_type="tsunagu.referral.requested.v1"):
        lines = logged(lambda log: (log.info("first\nsecond"), log.info("x", extra={"request_id": "abc"})))
    assert [line["event_id"] for line in lines] == ["0192f0c1-7a2e-7cc3-9a41-00000000aaaa"] * 2
    assert lines[0]["message"] == "first\nsecond"
    assert lines[1]["request_id"] == "abc"
    assert "event_id" not in logged(lambda log: log.info("after the block"))[0]
