"""A partner's webhook receiver for Tsunagu: Python's standard library and `standardwebhooks`.

It verifies each request's Standard Webhooks signature (webhook-id, webhook-timestamp,
webhook-signature over `id.timestamp.body`, HMAC-SHA256 with the partner's `whsec_` secret, within
five minutes of the timestamp), refuses a bad one with 401, answers 204 at once and prints the event
type and referral id. A delivery retried with the same webhook-id is answered 204 and not applied
again.

    WEBHOOK_SECRET=whsec_... WEBHOOK_PORT=8900 python receiver.py

The secret is read from the environment only, never printed. The body holds ids and codes, no
personal data; a partner fetches a person's details through partner-notification's API.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20  # a thin CloudEvent is far smaller
DRAIN_AT_MOST = 16 << 20  # a larger body is not read at all: the connection is closed on it
REMEMBERED_IDS = 10_000  # webhook-ids kept for deduplication (a real receiver keeps them in its database)


class Deliveries:
    """The webhook-ids already applied, the oldest forgotten first."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._seen:
                return False
            self._seen[webhook_id] = None
            if len(self._seen) > REMEMBERED_IDS:
                self._seen.popitem(last=False)
            return True


def handler(webhook: Webhook, deliveries: Deliveries) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if not 0 < length <= MAX_BODY:
                if length <= DRAIN_AT_MOST:
                    # Read past the body, so the sender gets the answer instead of a reset connection.
                    left = length
                    while left > 0 and (chunk := self.rfile.read(min(1 << 16, left))):
                        left -= len(chunk)
                self.close_connection = True
                self.answer(413 if length else 411, "本文の長さが不正です。", "the body's length is missing or too large")
                return
            body = self.rfile.read(length)
            webhook_id = self.headers.get("webhook-id", "-")
            try:
                event = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError as error:
                say(f"refused webhook-id={webhook_id}: {error}")
                self.answer(401, "署名を確認できません。", "the signature does not verify")
                return
            except ValueError:  # signed, but not JSON (the library parses the body once it verified)
                say(f"refused webhook-id={webhook_id}: the body is not JSON")
                self.answer(400, "本文が JSON ではありません。", "the body is not JSON")
                return
            if not isinstance(event, dict):
                say(f"refused webhook-id={webhook_id}: the body is not a JSON object")
                self.answer(400, "本文が JSON オブジェクトではありません。", "the body is not a JSON object")
                return
            first = deliveries.first_time(webhook_id)
            self.answer(204)
            data = event.get("data")
            referral_id = data.get("referral_id", "-") if isinstance(data, dict) else "-"
            say(f"{'accepted' if first else 'duplicate'} webhook-id={webhook_id} type={event.get('type')} "
                f"referral_id={referral_id}")

        def answer(self, status: int, message_ja: str = "", message_en: str = "") -> None:
            body = (json.dumps({"message_ja": message_ja, "message_en": message_en}, ensure_ascii=False).encode()
                    if message_en else b"")
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            if body:
                self.send_header("content-type", "application/json; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            """The lines above say what happened; the default access log would repeat them."""

    return Receive


def say(line: str) -> None:
    print(line, flush=True)


def main() -> None:
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        sys.exit("set WEBHOOK_SECRET to the partner's whsec_ secret (shown once at registration)")
    port = int(os.environ.get("WEBHOOK_PORT", "8900"))
    server = ThreadingHTTPServer((os.environ.get("WEBHOOK_HOST", "127.0.0.1"), port),
                                 handler(Webhook(secret), Deliveries()))
    say(f"listening on http://{server.server_address[0]}:{server.server_address[1]}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
