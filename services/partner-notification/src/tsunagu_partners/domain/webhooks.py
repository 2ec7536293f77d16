"""Standard Webhooks 1.0 delivery rules: the body, the signature headers, and the retry schedule.

2xx is success; 410 disables the endpoint; anything else, a timeout or a refused connection is
retried with exponential backoff and jitter, slowed by `Retry-After` when the receiver sends one,
until the last attempt, after which the delivery is a dead letter.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import Envelope


def cloudevent_body(envelope: Envelope) -> str:
    """A thin CloudEvent in structured JSON: ids, codes and categories, never personal data."""
    e = envelope.data
    return json.dumps({
        "specversion": "1.0", "id": str(envelope.id), "source": envelope.source, "type": e.type,
        "time": e.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "subject": str(e.case_id),
        "datacontenttype": "application/json", "data": json.loads(e.model_dump_json()),
    }, ensure_ascii=False, separators=(",", ":"))


def signed_headers(secret: str, delivery_id: str, body: str, now: datetime) -> dict[str, str]:
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, now, body),
        "content-type": "application/cloudevents+json",
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, first: float, ceiling: float) -> float:
    """Exponential with full jitter on the upper half: attempt 1 waits ~first, then doubles."""
    base = min(ceiling, first * 2 ** (attempt - 1))
    return base / 2 + random.uniform(0, base / 2)


def outcome(status: int | None) -> str:
    """`delivered`, `gone` (410: disable the endpoint) or `retry`."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "retry"
