"""Sending a partner's webhook a signed test event at once, and saying how its endpoint answered.

The test goes out through the same checked client as real deliveries (handlers/webhooks.py
`webhook_client`: the URL rules at send time, on every address the host resolves to), signed with
the partner's current secret and, while a rotation's overlap lasts, its previous one. It is not a
delivery: nothing is queued, retried or recorded but the time of the test, which is the rate limit
(adapters/registry.py `take_webhook_test`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import httpx
from cryptography.fernet import MultiFernet
from opentelemetry import trace
from pydantic import BaseModel, Field

from tsunagu_contracts import uuid7
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.domain.webhook_tests import (
    EXCERPT_BYTES, MIN_INTERVAL_S, READ_BYTES, WEBHOOK_TEST_TYPE, answer_excerpt, webhook_test_body,
)
from tsunagu_partners.domain.webhook_urls import UrlRefused
from tsunagu_partners.domain.webhooks import signed_headers
from tsunagu_partners.handlers.registry import webhook_secret
from tsunagu_servicehost.errors import Rejected

log = logging.getLogger("tsunagu.partners.webhook_test")


class WebhookTestResult(BaseModel):
    """How the partner's endpoint answered a test event. Never the secret, never the URL."""

    webhook_id: UUID = Field(description="The test's `webhook-id` header (and CloudEvent id).")
    event_type: str = Field(description=f"`{WEBHOOK_TEST_TYPE}`")
    sent_at: datetime
    delivered: bool = Field(description="The endpoint answered 2xx, as a real delivery must.")
    status_code: int | None = Field(description="The endpoint's HTTP status; null when no answer came.")
    duration_ms: int = Field(description="From sending to the end of the answer read (or the failure).")
    answer_excerpt: str | None = Field(
        description=f"The first {EXCERPT_BYTES} bytes of the answer's body when it is text (text/*, JSON, XML); "
                    "null otherwise. Any of the partner's secrets in it is shown as [secret].")
    answer_truncated: bool = Field(description=f"The body was longer than {EXCERPT_BYTES} bytes.")
    error: str | None = Field(description="The kind of failure when no answer came: `ConnectError`, "
                                          "`TimeoutError`, `url_refused:<rule>` …")
    webhook_disabled: bool = Field(description="Real deliveries are stopped after a 410; a coordinator "
                                               "re-enables them (`POST …/webhook/enable`).")
    signatures: int = Field(description="Signatures in `webhook-signature`: 2 while a rotated secret's "
                                        "overlap lasts.")
    message_ja: str
    message_en: str


class TooSoonToTest(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"tested less than {MIN_INTERVAL_S:g} s ago")
        self.retry_after_s = retry_after_s


async def take_test_slot(new_uow: NewUnitOfWork, partner_id: UUID):
    """The partner's webhook and secrets, the test's slot taken; or why not (404, 409, TooSoonToTest)."""
    async with new_uow() as uow:
        row = await uow.repo.registry.take_webhook_test(partner_id, MIN_INTERVAL_S)
        if row is not None:
            return row
        state = await uow.repo.registry.webhook_test_state(partner_id)
    if state is None:
        raise Rejected.not_found("連携団体", "partner")
    if state["deactivated_at"] is not None:
        raise Rejected.conflict("この団体は利用停止されています。", "the partner is deactivated")
    if state["webhook_url"] is None:
        raise Rejected.conflict("この団体には Webhook がありません。先に Webhook URL を設定してください。",
                                "the partner has no webhook: set its webhook URL first")
    raise TooSoonToTest(max(1, int(MIN_INTERVAL_S - (state["since_s"] or 0) + 0.999)))


async def send_webhook_test(new_uow: NewUnitOfWork, partner_id: UUID, *, cipher: MultiFernet,
                            client: Callable[[], httpx.AsyncClient], timeout_s: float) -> WebhookTestResult:
    row = await take_test_slot(new_uow, partner_id)
    secrets = [webhook_secret(cipher, row["webhook_secret"])]
    if row["previous_webhook_secret"] is not None:
        secrets.append(webhook_secret(cipher, row["previous_webhook_secret"]))
    webhook_id, now = uuid7(), datetime.now(UTC)
    body = webhook_test_body(webhook_id, partner_id, now)
    headers = signed_headers(secrets[0], str(webhook_id), body, now, secrets[1] if len(secrets) > 1 else None)
    status = content_type = error = refused = None
    raw = b""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s), client() as http:
            async with http.stream("POST", row["webhook_url"], content=body.encode(), headers=headers) as response:
                status, content_type = response.status_code, response.headers.get("content-type")
                if response.headers.get("content-encoding", "identity").lower() != "identity":
                    content_type = None  # a compressed answer is not unpacked: a small one can unpack huge
                async for chunk in response.aiter_raw():
                    raw += chunk
                    if len(raw) >= READ_BYTES:
                        break  # the rest is left unread; the connection is closed, not reused
    except TimeoutError:
        error = "TimeoutError"
    except UrlRefused as exc:
        error, refused = f"url_refused:{exc.code}", exc  # the reason, never the URL
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    took_ms = int((time.perf_counter() - started) * 1000)
    _answer_on_span(status, error, webhook_id)
    if error is not None:
        status = None  # headers came, then the deadline or the connection ended the answer
    delivered = status is not None and 200 <= status < 300
    log.info("webhook test %s to partner %s: status %s, error %s, %d ms", webhook_id, partner_id, status, error,
             took_ms)
    message_ja, message_en = _summary(status, error, refused, timeout_s)
    return WebhookTestResult(
        webhook_id=webhook_id, event_type=WEBHOOK_TEST_TYPE, sent_at=now, delivered=delivered, status_code=status,
        duration_ms=took_ms, answer_excerpt=answer_excerpt(content_type, raw, secrets) if status else None,
        answer_truncated=len(raw) > EXCERPT_BYTES, error=error,
        webhook_disabled=row["webhook_disabled_at"] is not None, signatures=len(secrets),
        message_ja=message_ja, message_en=message_en)


def _answer_on_span(status: int | None, error: str | None, webhook_id: UUID) -> None:
    """The answer on the route's span (ids and the status, never the URL or the body)."""
    span = trace.get_current_span()
    span.set_attribute("tsunagu.webhook_id", str(webhook_id))
    span.set_attribute("tsunagu.event_type", WEBHOOK_TEST_TYPE)
    if status is not None:
        span.set_attribute("tsunagu.webhook_status", status)
    if error is not None:
        span.set_attribute("tsunagu.webhook_error", error)


def _summary(status: int | None, error: str | None, refused: UrlRefused | None,
             timeout_s: float) -> tuple[str, str]:
    if refused is not None:
        return (f"送信しませんでした: {refused.message_ja}", f"not sent: {refused.message_en}")
    if error == "TimeoutError" or (error or "").endswith("Timeout"):
        return (f"{timeout_s:g} 秒以内に応答がありませんでした。本番の配信では再送されます。",
                f"no answer within {timeout_s:g} s; a real delivery would be retried")
    if error == "ConnectError":
        return ("接続できませんでした。受信側が起動しているか、URL とポートを確認してください。",
                "could not connect: check that the receiver is running and the URL and port are right")
    if error is not None:
        return (f"送信に失敗しました（{error}）。", f"the send failed ({error})")
    assert status is not None
    if 200 <= status < 300:
        return (f"テスト通知は受け付けられました（{status}）。", f"the test event was accepted ({status})")
    if status == 410:
        return ("受信側が 410 を返しました。本番の配信では Webhook が停止されます。",
                "the receiver answered 410: a real delivery would disable the webhook")
    return (f"受信側が {status} を返しました。署名を検証できたら 2xx で応答してください。本番の配信では再送されます。",
            f"the receiver answered {status}; answer 2xx once the signature verifies. A real delivery would be retried")


__all__ = ["TooSoonToTest", "WebhookTestResult", "send_webhook_test"]
