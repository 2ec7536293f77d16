"""Standard Webhooks 1.0 delivery rules: the body, the signature headers, and the retry schedule.

2xx is success; 410 disables the endpoint; anything else, a timeout or a refused connection is
retried on a schedule that spans more than a day (a small partner's server may be down overnight,
and a referral must still reach it), with jitter, slowed by `Retry-After` when the receiver sends
one, until the last attempt, after which the delivery is a dead letter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from uuid import UUID

from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import Envelope, ReferralRequested, ReferralRerouted


def cloudevent_body(envelope: Envelope) -> str:
    """A thin CloudEvent in structured JSON: ids, codes and categories, never personal data."""
    e = envelope.data
    return json.dumps({
        "specversion": "1.0", "id": str(envelope.id), "source": envelope.source, "type": e.type,
        "time": e.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "subject": str(e.case_id),
        "datacontenttype": "application/json", "data": json.loads(e.model_dump_json()),
    }, ensure_ascii=False, separators=(",", ":"))


DETAILS_LINK = "detailsurl"
"""The CloudEvents extension attribute that links a referral's webhook to its details.

CloudEvents attribute names are lower-case letters and digits only (the official SDKs refuse any
other, `details_url` included), and the event's `data` is the contract's schema, which admits no
field it does not declare: an extension attribute is the one place a link is additive for every
receiver."""


def details_url(public_url: str, partner_id: UUID, referral_id: UUID) -> str:
    """`GET /v1/partners/{partner_id}/referrals/{referral_id}` on the service's public address."""
    return f"{public_url.rstrip('/')}/v1/partners/{partner_id}/referrals/{referral_id}"


def with_details_link(body: str, partner_id: UUID, public_url: str | None) -> str:
    """The body as sent: a referral asked of this partner (`referral_asked_of`) carries the link to its
    details as `detailsurl`; every other body is sent as queued. Added at send time, so a redelivery
    of an older delivery carries it too, on the address the service has now."""
    if not public_url:
        return body
    referral_id = referral_asked_of(body, partner_id)
    if referral_id is None:
        return body
    event = json.loads(body)
    event[DETAILS_LINK] = details_url(public_url, partner_id, referral_id)
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def signed_headers(secret: str, delivery_id: str, body: str, now: datetime,
                   previous_secret: str | None = None) -> dict[str, str]:
    """The Standard Webhooks headers. While a rotated secret's overlap lasts, the signature header
    carries one signature per secret, the new one first (`v1,<new> v1,<previous>`): a receiver that
    still knows only the previous secret, and one that already has the new one, both verify it."""
    secrets = [secret] if previous_secret is None else [secret, previous_secret]
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(delivery_id, now, body) for s in secrets),
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


RETRY_SCHEDULE_S: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
"""The wait after each failed attempt, as in the Standard Webhooks reference sender (Svix): the first
attempt at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: eight attempts over about 28 hours."""

JITTER = 0.2
"""Each wait is drawn within ±20% of its step, so deliveries that failed together do not return together."""

RETRY_AFTER_CAP_S = 10 * 3600
"""A receiver's `Retry-After` is honoured up to the schedule's longest step: one asking for a week
would otherwise hold a referral for a week."""


def retry_delay(attempt: int, schedule: Sequence[float], retry_after: float | None = None) -> float | None:
    """Seconds to wait after failed attempt `attempt` (1 for the first); None when the schedule is spent.

    A receiver's `Retry-After` (in real seconds, whatever the schedule) lengthens the wait, never
    shortens it.
    """
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_S))
    return delay


def referral_asked_of(body: str, partner_id: UUID) -> UUID | None:
    """The referral an undelivered event asked this partner to take, if it was one: a request to it,
    or a referral rerouted to it. The referral service moves such a referral on (DeliveryFailed)."""
    event = json.loads(body)
    data = event["data"]
    if event["type"] == ReferralRequested.type:
        recipient, referral_id = data["recipient"], data["referral_id"]
    elif event["type"] == ReferralRerouted.type:
        recipient, referral_id = data["new_recipient"], data["new_referral_id"]
    else:
        return None
    return UUID(referral_id) if recipient.get("partner_id") == str(partner_id) else None


def outcome(status: int | None) -> str:
    """`delivered`, `gone` (410: disable the endpoint) or `retry`."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "retry"
