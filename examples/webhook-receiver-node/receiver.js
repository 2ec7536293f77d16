// A partner's webhook receiver for Tsunagu: node:http and the `standardwebhooks` package.
//
// It verifies each request's Standard Webhooks signature (webhook-id, webhook-timestamp,
// webhook-signature over `id.timestamp.body`, HMAC-SHA256 with the partner's `whsec_` secret, within
// five minutes of the timestamp), refuses a bad one with 401, answers 204 at once and prints the
// event type and referral id. A delivery retried with the same webhook-id is answered 204 and not
// applied again.
//
//     WEBHOOK_SECRET=whsec_... WEBHOOK_PORT=8901 node receiver.js
//
// The secret is read from the environment only, never printed. The body holds ids and codes, no
// personal data; a partner fetches a person's details through partner-notification's API.

import { createServer } from "node:http";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const MAX_BODY = 1 << 20; // a thin CloudEvent is far smaller
const DRAIN_AT_MOST = 16 << 20;
const REMEMBERED_IDS = 10_000; // webhook-ids kept for deduplication (a real receiver keeps them in its database)

const secret = process.env.WEBHOOK_SECRET ?? "";
if (!secret.startsWith("whsec_")) {
  console.error("set WEBHOOK_SECRET to the partner's whsec_ secret (shown once at registration)");
  process.exit(2);
}
const webhook = new Webhook(secret);
const seen = new Set(); // insertion-ordered: the oldest id is forgotten first

function firstTime(webhookId) {
  if (seen.has(webhookId)) return false;
  seen.add(webhookId);
  if (seen.size > REMEMBERED_IDS) seen.delete(seen.values().next().value);
  return true;
}

function answer(response, status, messageJa, messageEn) {
  const body = messageEn ? JSON.stringify({ message_ja: messageJa, message_en: messageEn }) : "";
  response.writeHead(status, body ? { "content-type": "application/json; charset=utf-8" } : {});
  response.end(body);
}

const server = createServer((request, response) => {
  if (request.method !== "POST") {
    answer(response, 405, "POST だけを受け付けます。", "only POST is accepted");
    return;
  }
  const chunks = [];
  let size = 0;
  request.on("data", (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
    else if (size > DRAIN_AT_MOST) request.destroy(); // a larger body is not read further
  });
  request.on("end", () => {
    if (size > MAX_BODY) {
      // Read to its end (and dropped), so the sender gets the answer instead of a reset connection.
      answer(response, 413, "本文が大きすぎます。", "the body is too large");
      return;
    }
    const body = Buffer.concat(chunks);
    const webhookId = request.headers["webhook-id"] ?? "-";
    let event;
    try {
      event = webhook.verify(body, request.headers);
    } catch (error) {
      if (error instanceof WebhookVerificationError) {
        console.log(`refused webhook-id=${webhookId}: ${error.message}`);
        answer(response, 401, "署名を確認できません。", "the signature does not verify");
      } else {
        // Signed, but not JSON (the library parses the body once it verified). The parser's message
        // quotes the body, so it is not printed.
        console.log(`refused webhook-id=${webhookId}: the body is not JSON`);
        answer(response, 400, "本文が JSON ではありません。", "the body is not JSON");
      }
      return;
    }
    if (typeof event !== "object" || event === null || Array.isArray(event)) {
      console.log(`refused webhook-id=${webhookId}: the body is not a JSON object`);
      answer(response, 400, "本文が JSON オブジェクトではありません。", "the body is not a JSON object");
      return;
    }
    const first = firstTime(webhookId);
    answer(response, 204);
    const referralId = event?.data?.referral_id ?? "-";
    console.log(`${first ? "accepted" : "duplicate"} webhook-id=${webhookId} type=${event?.type} referral_id=${referralId}`);
  });
});

const host = process.env.WEBHOOK_HOST ?? "127.0.0.1";
server.listen(Number(process.env.WEBHOOK_PORT ?? 8901), host, () => {
  console.log(`listening on http://${host}:${server.address().port}/`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
