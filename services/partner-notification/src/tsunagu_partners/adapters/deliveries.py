"""Deliveries: one event queued for one partner's webhook (or, for a partner without one, a mail
notice of a referral addressed to it), and what became of it.

Concurrency rules, stated here and beside each statement that needs one:

- A mail notice is a delivery on the `email` channel, queued by the same fan-out in the same
  transaction. One mail per referral per partner is the partial unique index
  deliveries_one_mail_per_referral (partner_id, referral_id) WHERE channel = 'email' (0009): a second
  event asking for the same referral's notice finds it there (ON CONFLICT DO NOTHING). Webhook and
  mail senders claim only their own channel's rows, by the same leased claim.
- Queueing is idempotent on (partner_id, event_id): a redelivered event finds its delivery there
  (ON CONFLICT DO NOTHING). It runs under the case's advisory lock like all of the fan-out.
- The sender claims with a lease: due rows are chosen without locks (a window function cannot
  lock), then claimed by one UPDATE that checks again that each is still due and still allowed.
  Two senders never claim one delivery: the second UPDATE re-reads a row the first changed and
  finds it no longer due. A sender that dies mid-send leaves the row 'sending' until its lease
  ends; then it is due again.
- A send's outcome is recorded only `WHERE status = 'sending'`: a delivery withdrawn (consent
  withdrawn) while it was being sent stays withdrawn, and the outcome is dropped.
- A redelivery by hand moves only a 'dead' or 'delivered' row: one being sent is left to its sender.
- An event forwarded to a partner's own topic is an outbox row until the relay publishes it. A
  withdrawal deletes the case's unpublished rows for that topic under the case's lock. The relay is
  the outbox's single writer (tsunagu_outbox.relay): it reads due rows without locking them and marks
  them published after the send, so a row it read before the withdrawal committed is still
  published; the window is one batch's send.
- A deactivation (handlers/registry.py `deactivate`) marks the partner deactivated and its
  undelivered rows 'cancelled' under the partner's row lock, so no fan-out queues behind it
  (adapters/registry.py). Rows being sent are left to their senders, and the deactivation waits
  until none is in flight (`in_flight`) before cancelling what those sends left pending: once it
  answers, no request to the partner is under way and none starts, because a claim only takes rows
  of active partners and re-checks each row under its lock. `cancel_due_of_inactive` catches any
  row queued for a deactivated partner by another path (a redelivery that raced it).
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import ConsentWithdrawn, StatutoryBasisEnded

from tsunagu_outbox.store import current_trace_context

DELIVERIES_CHANNEL = "tsunagu_deliveries"

# The notices that a permission ended: always sent, the last the partner hears of the case.
NOTICES_OF_AN_END = [ConsentWithdrawn.type, StatutoryBasisEnded.type]

# A delivery is sent only while its partner may still see the case ($1: today's Japan date, $2:
# NOTICES_OF_AN_END): a delivery queued before a withdrawal, the end of a statutory basis or the end
# of a consent's validity is not sent after it.
MAY_STILL_SEE = (
    "(d.event_type = ANY($2::text[]) OR EXISTS (SELECT 1 FROM permissions g WHERE g.case_id = d.case_id "
    "AND g.partner_id = d.partner_id AND g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until >= $1) "
    # A consent counts only for the purposes the delivery's event needs (NULL: any); a basis for all.
    "AND (g.basis <> 'consent' OR d.purposes IS NULL OR g.purpose = ANY(d.purposes))))")
CLAIMABLE = {
    "webhook": "y.webhook_url IS NOT NULL AND y.webhook_disabled_at IS NULL",
    "email": "y.contact->>'email' IS NOT NULL",
}
"""What a partner needs for a delivery of each channel to be sent (y: its row in the claim)."""
DUE = ("((d.status = 'pending' AND d.next_attempt_at <= now()) "
       "OR (d.status = 'sending' AND d.lease_until < now()))")


class Deliveries:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # the fan-out -----------------------------------------------------------------------------

    async def queue(self, delivery_id: UUID, partner_id: UUID, event_id: UUID, event_type: str, case_id: UUID,
                    body: str, purposes: list[str] | None, channel: str = "webhook",
                    referral_id: UUID | None = None) -> None:
        """Once per (partner, event), and a mail once per (partner, referral); the sender is woken when
        the transaction commits. The delivery keeps the current trace (the consumed event's), which
        its sends continue."""
        # No conflict target: either unique rule (the event's, or the mail's per referral) makes a
        # second queueing a no-op, which is what a redelivered or repeated event must be.
        # One statement: the row, and the sender woken (on commit) when there is a new one.
        await self.conn.execute(
            "WITH queued AS (INSERT INTO deliveries (delivery_id, partner_id, event_id, event_type, case_id, body, "
            "status, next_attempt_at, created_at, purposes, traceparent, channel, referral_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, 'pending', now(), now(), $7, $8, $9, $10) "
            f"ON CONFLICT DO NOTHING RETURNING 1) SELECT pg_notify('{DELIVERIES_CHANNEL}', '') FROM queued",
            delivery_id, partner_id, event_id, event_type, case_id, body, purposes,
            current_trace_context().get("traceparent"), channel, referral_id)

    async def published(self, event_id: UUID, topic: str) -> bool:
        """Whether the event is already in the outbox for the partner's own topic (a redelivered event)."""
        return bool(await self.conn.fetchval("SELECT 1 FROM outbox WHERE event_id = $1 AND topic = $2",
                                             event_id, topic))

    async def unpublished_forwards(self, case_id: UUID, topic: str) -> list[asyncpg.Record]:
        """The case's events forwarded to a partner's topic and not yet published (id, headers, value)."""
        # record_key is the case id (the contracts' record key); the lane index serves this.
        return await self.conn.fetch("SELECT id, event_id, headers, value FROM outbox WHERE topic = $1 "
                                     "AND record_key = $2 AND published_at IS NULL ORDER BY id", topic, str(case_id))

    async def drop_forwards(self, ids: list[int]) -> None:
        """Withdraw forwards not yet published. Under the case's lock (see the module's rules)."""
        await self.conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND published_at IS NULL", ids)

    async def withdraw_unsent(self, case_id: UUID, partner_id: UUID, except_event_id: UUID,
                              consented: list[str]) -> None:
        """Withdraw the case's deliveries not yet made to the partner, unless a consent that remains is
        for a purpose they need (one for any purpose, when they need none in particular).

        Under the case's lock; a row being sent is withdrawn too, and its sender's outcome then dropped."""
        await self.conn.execute("UPDATE deliveries SET status = 'withdrawn' WHERE case_id = $1 AND partner_id = $2 "
                                "AND status IN ('pending', 'sending') AND event_id <> $3 "
                                "AND NOT coalesce(purposes && $4::text[], cardinality($4::text[]) > 0)",
                                case_id, partner_id, except_event_id, consented)

    # the HTTP API ----------------------------------------------------------------------------

    async def case_trace(self, partner_id: UUID, referral_id: UUID) -> str | None:
        """The traceparent of the first delivery of the referral's case to the partner: the case's
        trace as the partner heard of it, which the partner's answers continue."""
        return await self.conn.fetchval(
            "SELECT d.traceparent FROM deliveries d JOIN partner_referrals r ON r.case_id = d.case_id "
            "WHERE r.referral_id = $2 AND d.partner_id = $1 AND d.traceparent IS NOT NULL "
            "ORDER BY d.created_at LIMIT 1", partner_id, referral_id)

    async def of_partner(self, partner_id: UUID, status: str | None, limit: int) -> list[asyncpg.Record]:
        """The partner's delivery log, newest first."""
        return await self.conn.fetch(
            "SELECT delivery_id, channel, referral_id, event_id, event_type, case_id, status, attempts, next_attempt_at, last_status, "
            "last_error, created_at, delivered_at FROM deliveries WHERE partner_id = $1 "
            "AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT $3", partner_id, status, limit)

    async def redeliver(self, partner_id: UUID, delivery_id: UUID, today: date) -> bool:
        """Queue a delivered or dead delivery again; False when it is not one, or the partner may no
        longer see its case.

        Only while the partner may still see the case, under a consent for a purpose the event needs
        (as the fan-out queued it): a withdrawn consent is not undone by hand. One UPDATE: a row being
        sent ('sending') is not taken from its sender."""
        updated = await self.conn.execute(
            "UPDATE deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now() "
            f"WHERE d.delivery_id = $3 AND d.partner_id = $4 AND d.status IN ('dead', 'delivered') AND {MAY_STILL_SEE} "
            "AND EXISTS (SELECT 1 FROM partners p WHERE p.partner_id = d.partner_id AND p.deactivated_at IS NULL)",
            today, NOTICES_OF_AN_END, delivery_id, partner_id)
        return updated != "UPDATE 0"

    # deactivation -----------------------------------------------------------------------------

    async def cancel_undelivered(self, partner_id: UUID, *, including_sending: bool) -> int:
        """Marks the partner's undelivered rows 'cancelled' (kept, for its history): the pending ones,
        and with `including_sending` those whose send has ended without an outcome too."""
        statuses = ["pending", "sending"] if including_sending else ["pending"]
        cancelled = await self.conn.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = 'partner_deactivated' "
            "WHERE partner_id = $1 AND status = ANY($2::text[])", partner_id, statuses)
        return int(cancelled.split()[-1])

    async def in_flight(self, partner_id: UUID) -> int:
        """The partner's deliveries being sent right now (claimed, their lease running)."""
        return await self.conn.fetchval("SELECT count(*) FROM deliveries WHERE partner_id = $1 "
                                        "AND status = 'sending' AND lease_until > now()", partner_id)

    async def drop_unpublished_forwards_to(self, topic: str) -> int:
        """Forwards to a deactivated partner's topic not yet published (the relay's window as above)."""
        dropped = await self.conn.execute("DELETE FROM outbox WHERE topic = $1 AND published_at IS NULL", topic)
        return int(dropped.split()[-1])

    # the sender ------------------------------------------------------------------------------

    async def withdraw_due_unseen(self, today: date) -> int:
        """Due deliveries whose partner may no longer see the case are marked 'withdrawn', not sent."""
        withdrawn = await self.conn.execute(
            f"UPDATE deliveries d SET status = 'withdrawn' WHERE {DUE} AND NOT {MAY_STILL_SEE}",
            today, NOTICES_OF_AN_END)
        return int(withdrawn.split()[-1])

    async def cancel_due_of_inactive(self) -> int:
        """Due deliveries of deactivated partners are marked 'cancelled', not sent."""
        cancelled = await self.conn.execute(
            f"UPDATE deliveries d SET status = 'cancelled', last_error = 'partner_deactivated' WHERE {DUE} "
            "AND EXISTS (SELECT 1 FROM partners p WHERE p.partner_id = d.partner_id AND p.deactivated_at IS NOT NULL)")
        return int(cancelled.split()[-1])

    async def claim(self, today: date, busy: dict[UUID, int], per_partner: int, limit: int,
                    lease_s: float, channel: str = "webhook") -> list[asyncpg.Record]:
        """Due deliveries of `channel`, at most `per_partner` in flight for any one partner (counting
        `busy`), leased to the caller for `lease_s`."""
        reachable = CLAIMABLE[channel]
        partners = list(busy)
        # Chosen without locks (a window function cannot lock), then claimed by an UPDATE that
        # checks again that each is still due and allowed, so two senders never claim the same
        # delivery and a permission that ended meanwhile is seen.
        return await self.conn.fetch(
            "WITH busy (partner_id, n) AS (SELECT * FROM unnest($3::uuid[], $4::int[])), "
            "due AS (SELECT x.delivery_id, row_number() OVER (PARTITION BY x.partner_id "
            "        ORDER BY x.next_attempt_at) + coalesce(b.n, 0) AS slot "
            "  FROM deliveries x JOIN partners y USING (partner_id) LEFT JOIN busy b USING (partner_id) "
            "  WHERE ((x.status = 'pending' AND x.next_attempt_at <= now()) "
            "         OR (x.status = 'sending' AND x.lease_until < now())) "
            f"    AND x.channel = $8 AND {reachable} AND y.deactivated_at IS NULL), "
            "chosen AS (SELECT delivery_id FROM due WHERE slot <= $5 ORDER BY slot LIMIT $6) "
            "UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, "
            "lease_until = now() + make_interval(secs => $7) FROM partners p, chosen c "
            f"WHERE d.delivery_id = c.delivery_id AND p.partner_id = d.partner_id AND {DUE} AND {MAY_STILL_SEE} "
            "AND p.deactivated_at IS NULL AND d.channel = $8 "
            "RETURNING d.delivery_id, d.partner_id, d.case_id, d.event_id, d.event_type, d.body, d.attempts, "
            "d.traceparent, d.channel, p.contact->>'email' AS email, p.webhook_url, p.webhook_secret, CASE WHEN p.previous_webhook_secret_valid_until > now() "
            "THEN p.previous_webhook_secret END AS previous_webhook_secret",
            today, NOTICES_OF_AN_END, partners, [busy[p] for p in partners], per_partner, limit, lease_s, channel)

    async def delivered(self, delivery_id: UUID, status: int) -> None:
        await self.conn.execute("UPDATE deliveries SET status = 'delivered', delivered_at = now(), "
                                "last_status = $2, last_error = NULL WHERE delivery_id = $1 AND status = 'sending'",
                                delivery_id, status)

    async def retry_at(self, delivery_id: UUID, at: datetime, status: int | None, error: str | None) -> None:
        await self.conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, last_status = $3, last_error = $4 "
            "WHERE delivery_id = $1 AND status = 'sending'", delivery_id, at, status, error)

    async def dead(self, delivery_id: UUID, status: int | None, error: str | None) -> bool:
        """False when the delivery was no longer being sent (withdrawn meanwhile): nothing to report."""
        updated = await self.conn.execute(
            "UPDATE deliveries SET status = 'dead', last_status = $2, last_error = $3 "
            "WHERE delivery_id = $1 AND status = 'sending'", delivery_id, status, error)
        return updated != "UPDATE 0"


__all__ = ["DELIVERIES_CHANNEL", "DUE", "MAY_STILL_SEE", "Deliveries"]
