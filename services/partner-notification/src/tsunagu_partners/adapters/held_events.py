"""Events held until the partner they are addressed to may see them, and the case lock that orders them.

Consent arrives on intake's topic, referrals on referral's: separate consumers read them at the
same time, so a referral addressed to a partner can come before the consent that lets the partner
see it. It is held, and released when the consent (or a statutory basis) is recorded.

The rule (DESIGN §5, concurrency): every transaction that reads a case's permissions to decide
what to deliver or hold, or that changes a case's permissions and releases its held events, first
takes the case's transaction-scoped advisory lock (`HeldEvents.lock_case`; every handler in fan_out.py is
`handlers.held.case_locked`), before its own writes. So the referral path and the consent path for one case
run one after the other, never interleaved:

- referral first: the consent path waits for the lock, then (a new statement, a new snapshot under
  READ COMMITTED) sees the held row the referral committed, and releases it;
- consent first: the referral path waits, then sees the committed permission and delivers.

Without the lock both could commit with the held row's INSERT invisible to the release's DELETE,
and the row stayed held for good (41 of 800 referrals at 40 consultations/s).

Deadlock-free: the lock is per case (two cases whose keys collide merely share one), and a
transaction only ever concerns one case (an event, or one case of the sweep), so it takes exactly
one of these locks and never waits for a second while holding the first. It is taken before the
handler's writes (only the consumer's applied-event row, unique to the event, comes first), so it
is never awaited while holding a row lock another case-locked transaction could need. Taking it
again in the same transaction (a handler, then the fan-out it calls) only nests.

The sweep is the safety net DESIGN asks of anything parked: a periodic task (`sweep.HeldSweeper`)
releases held rows whose permission exists (`HeldEvents.releasable`), each case under the same lock.
"""

from __future__ import annotations

import hashlib
from datetime import date
from uuid import UUID

import asyncpg

from tsunagu_outbox.locks import holds, took

# Two 32-bit keys: that key space is apart from the single 64-bit keys (the outbox relay's lock).
LOCK_CLASS = 0x68656C64  # "held"


def case_lock_key(case_id: UUID) -> int:
    """The same 32-bit key for a case in every process (Python's own hash is salted per process)."""
    return int.from_bytes(hashlib.blake2b(case_id.bytes, digest_size=4).digest(), "big", signed=True)


class HeldEvents:
    """Held rows of one case, written and taken out only under that case's lock (`lock_case`)."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def lock_case(self, case_id: UUID) -> None:
        """Wait for the case's lock; it is held until the transaction ends (call it inside one). A
        transaction that holds it already (a batch's earlier event of the case) does not ask again."""
        lock = (LOCK_CLASS, case_lock_key(case_id))
        if holds(lock):
            return
        await self.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *lock)
        took(lock)

    async def lock_cases(self, case_ids: list[UUID]) -> None:
        """`lock_case` for several cases at once, in the order of their keys: two transactions that
        lock some of the same cases this way never wait on each other in a circle."""
        keys = sorted({case_lock_key(case_id) for case_id in case_ids})
        await self.conn.execute("SELECT count(pg_advisory_xact_lock($1, k)) FROM "
                                "(SELECT k FROM unnest($2::int[]) AS k ORDER BY k) AS ordered", LOCK_CLASS, keys)
        took(*((LOCK_CLASS, key) for key in keys))

    async def try_lock_case(self, case_id: UUID) -> bool:
        lock = (LOCK_CLASS, case_lock_key(case_id))
        if holds(lock):
            return True
        locked = await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", *lock)
        if locked:
            took(lock)
        return locked

    async def hold(self, case_id: UUID, partner_id: UUID, event_id: UUID, headers_json: str, value: bytes,
                   purposes: list[str] | None) -> None:
        """Once per (case, partner, event): a redelivered event finds its row there."""
        await self.conn.execute(
            "INSERT INTO held_events (case_id, partner_id, event_id, headers, value, purposes) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            case_id, partner_id, event_id, headers_json, value, purposes)

    async def take(self, case_id: UUID, partner_id: UUID) -> list[asyncpg.Record]:
        """Delete and return what is held for the partner, oldest first.

        Under the case's lock no held row of the case is uncommitted in another transaction, so the
        DELETE sees every one (the lost release the lock exists for)."""
        rows = await self.conn.fetch("DELETE FROM held_events WHERE case_id = $1 AND partner_id = $2 "
                                     "RETURNING headers, value, held_at", case_id, partner_id)
        return sorted(rows, key=lambda r: r["held_at"])

    async def drop_for_partner(self, partner_id: UUID) -> int:
        """A deactivated partner's held events: nothing will ever release them to it.

        Called in the deactivation's transaction, after its UPDATE took the partner's row lock; a
        fan-out holds an event only under a share lock on that row (registry.lock_receiving), so
        it either held the event before (and this DELETE sees it) or sees the partner deactivated."""
        deleted = await self.conn.execute("DELETE FROM held_events WHERE partner_id = $1", partner_id)
        return int(deleted.split()[-1])

    async def releasable(self, today: date, limit: int) -> list[asyncpg.Record]:
        """(case, partner) pairs the sweep releases, longest held first.

        The test is the fan-out's own (a subscribed partner, a permission valid on the event's Japan
        date, for a purpose the event needs) and also valid today, so that what is released is delivered and sent, not held again.
        Should the fan-out still hold an event again, its new `held_at` puts it at the back: the batch
        never gets stuck on the same pairs. Read without locks: the sweep takes each case's lock before
        releasing, and the release decides again.
        """
        return await self.conn.fetch(
            "SELECT h.case_id, h.partner_id FROM held_events h "
            "WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.partner_id = h.partner_id) "
            "AND EXISTS (SELECT 1 FROM permissions g WHERE g.case_id = h.case_id AND g.partner_id = h.partner_id "
            "  AND g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until >= greatest($1::date, "
            "  ((h.headers->>'ce_time')::timestamptz AT TIME ZONE 'Asia/Tokyo')::date)) "
            # A consent reaches a purpose-bound event only when given for one of the purposes the fan-out
            # stored with it (routing.purposes_for: by event type, and for a referral by its need).
            "  AND (g.basis <> 'consent' OR h.purposes IS NULL OR g.purpose = ANY(h.purposes))) "
            "GROUP BY h.case_id, h.partner_id ORDER BY min(h.held_at) LIMIT $2", today, limit)

    async def count(self, case_id: UUID | None = None, partner_id: UUID | None = None) -> int:
        return await self.conn.fetchval("SELECT count(*) FROM held_events WHERE ($1::uuid IS NULL OR case_id = $1) "
                                        "AND ($2::uuid IS NULL OR partner_id = $2)", case_id, partner_id)


__all__ = ["HeldEvents", "case_lock_key"]
