"""The test event a partner's developer sends to its own webhook, and what the answer shows of itself.

The event is signed and framed exactly like a real delivery (domain/webhooks.py), so a receiver that
verifies it verifies real ones too. It names only the partner and the test: no case, no person.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

WEBHOOK_TEST_TYPE = "tsunagu.partners.webhook-test.v1"
SOURCE = "tsunagu/partner-notification"

MIN_INTERVAL_S = 5.0
"""One test per partner every five seconds: a developer may press the button again and again, but
the service never becomes a way to hammer someone's server."""

EXCERPT_BYTES = 1024
"""How much of the receiver's answer is shown back: enough for an error message, never a page."""

TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/xml",
              "application/x-www-form-urlencoded")


def webhook_test_body(webhook_id: UUID, partner_id: UUID, now: datetime) -> str:
    """A structured CloudEvent like every webhook's; its data names the partner and nothing else."""
    return json.dumps({
        "specversion": "1.0", "id": str(webhook_id), "source": SOURCE, "type": WEBHOOK_TEST_TYPE,
        "time": now.astimezone(UTC).isoformat().replace("+00:00", "Z"), "subject": str(partner_id),
        "datacontenttype": "application/json",
        "data": {"partner_id": str(partner_id), "test": True,
                 "message_ja": "つなぐからのテスト通知です。署名を検証し、2xx で応答してください。",
                 "message_en": "A test event from Tsunagu: verify its signature and answer 2xx."},
    }, ensure_ascii=False, separators=(",", ":"))


def is_text(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media.startswith(TEXT_TYPES) or media.endswith(("+json", "+xml"))


READ_BYTES = EXCERPT_BYTES + 256
"""How much of the answer is read: the excerpt and a margin, so that a secret straddling the
excerpt's end is still seen whole and blanked out."""


def answer_excerpt(content_type: str | None, raw: bytes, secrets: list[str]) -> str | None:
    """The first EXCERPT_BYTES of a text answer (`raw` is what was read, up to READ_BYTES), decoded
    leniently; None for any other answer.

    A receiver that echoes what it knows could echo the partner's own secret: every secret is blanked
    out, whole or as its key part, and so is the start of one cut off where the reading stopped."""
    if not raw or not is_text(content_type):
        return None
    text = raw[:READ_BYTES].decode("utf-8", errors="replace")
    parts = sorted({p for s in secrets for p in (s, s.removeprefix("whsec_")) if p}, key=len, reverse=True)
    for part in parts:
        text = text.replace(part, "[secret]")
    for part in parts:
        for n in range(len(part) - 1, 3, -1):
            if text.endswith(part[:n]):
                text = text[:-n] + "[secret]"
                break
    return text[:EXCERPT_BYTES]
