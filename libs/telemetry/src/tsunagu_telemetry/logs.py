"""Logs as JSON lines that carry the trace: one object per line, joinable with the spans.

Each line has `time` (ISO 8601, UTC), `level`, `service`, `logger`, `message`, the current span's
`trace_id` and `span_id`, and whatever ids the code handling the record bound with `log_fields`
(the event or the HTTP request in hand). Ids and codes only: messages name types, ids and codes,
never a person's data, as the span attributes do.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

_bound: ContextVar[dict[str, str]] = ContextVar("tsunagu_log_fields", default={})

EXTRA_FIELDS = ("event_id", "event_type", "request_id", "case_id", "referral_id", "partner_id", "delivery_id",
                "topic")
"""Ids a call may also pass as `log.info(..., extra={"event_id": ...})`."""


@contextmanager
def log_fields(**fields: object) -> Iterator[None]:
    """Every line logged inside the block (in this task and the tasks it starts) carries these ids."""
    token = _bound.set({**_bound.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonLines(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = trace.format_trace_id(span.trace_id)
            entry["span_id"] = trace.format_span_id(span.span_id)
        entry |= _bound.get()
        entry |= {key: str(getattr(record, key)) for key in EXTRA_FIELDS if hasattr(record, key)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # One line whatever the message holds: json.dumps escapes newlines.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, level: int = logging.INFO) -> None:
    """The process's logs as JSON lines on stderr (`make run` keeps them in var/log/<service>.log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's full URL at INFO: a partner's webhook URL may hold its own token.
    # The webhook spans say what was sent and what came back.
    logging.getLogger("httpx").setLevel(logging.WARNING)
