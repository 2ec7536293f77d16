"""partner-notification's copy of each referral addressed to a partner, and the partners' answers.

Concurrency: every change to a referral's status takes its row lock first (SELECT ... FOR UPDATE
on partner_referrals, `lock_status`) and decides under it. An answer holds it from its check to its
commit, and referral's events (referral_status.follow_referral) take the same one, so an answer and
an event about one referral happen one after the other, each seeing the other's result; two answers
for one referral are checked and written in turn, and their outbox ids (and so the order referral
applies them in) follow that order. Opening, closing and reopening a case's referrals are single
UPDATEs (their own row locks) made by fan-out handlers under the case's advisory lock.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import ReferralRequested

REQUESTED = ReferralRequested.type


class Referrals:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def open(self, referral_id: UUID, case_id: UUID, partner_id: UUID, municipality_code: str, need: str,
                   at: datetime) -> None:
        """Once per referral: a redelivered request finds it there."""
        await self.conn.execute(
            "INSERT INTO partner_referrals (referral_id, case_id, partner_id, municipality_code, need, status, "
            "updated_at) VALUES ($1, $2, $3, $4, $5, 'requested', $6) ON CONFLICT DO NOTHING",
            referral_id, case_id, partner_id, municipality_code, need, at)

    async def need_of(self, referral_id: UUID) -> str | None:
        return await self.conn.fetchval("SELECT need FROM partner_referrals WHERE referral_id = $1", referral_id)

    async def close_case(self, case_id: UUID, closed: str, active: list[str]) -> None:
        """Close the case's active referrals, each keeping the status it had for the reopening."""
        await self.conn.execute("UPDATE partner_referrals SET status = $2, status_before_close = status "
                                "WHERE case_id = $1 AND status = ANY($3::text[])", case_id, closed, active)

    async def reopen_case(self, case_id: UUID, closed: str) -> None:
        await self.conn.execute("UPDATE partner_referrals SET status = status_before_close, status_before_close = NULL "
                                "WHERE case_id = $1 AND status = $2", case_id, closed)

    async def lock_status(self, referral_id: UUID, partner_id: UUID | None = None) -> str | None:
        """The referral's status, its row locked to the commit (FOR UPDATE); None when there is no such
        referral (addressed to `partner_id`, when given)."""
        return await self.conn.fetchval(
            "SELECT status FROM partner_referrals WHERE referral_id = $1 AND ($2::uuid IS NULL OR partner_id = $2) "
            "FOR UPDATE", referral_id, partner_id)

    async def set_status(self, referral_id: UUID, status: str, at: datetime) -> None:
        """Only under the row lock of `lock_status`, taken in this transaction."""
        await self.conn.execute("UPDATE partner_referrals SET status = $2, updated_at = $3 WHERE referral_id = $1",
                                referral_id, status, at)

    async def record_response(self, response_id: UUID, partner_id: UUID, referral_id: UUID, response: str,
                              at: datetime) -> None:
        await self.conn.execute("INSERT INTO responses (response_id, partner_id, referral_id, response, created_at) "
                                "VALUES ($1, $2, $3, $4, $5)", response_id, partner_id, referral_id, response, at)

    async def addressed_to(self, partner_id: UUID, before: UUID | None, limit: int) -> list[asyncpg.Record]:
        """The partner's inbox, newest first (referral ids are UUIDv7: ordered by creation), `before` a
        referral id for the next page: the referrals addressed to it on cases it was ever allowed to
        see, each with its deadline to accept (from the request as delivered to its webhook, when it
        was), its last answer and the status as known here.

        Only ids, codes and times, never the person's details. A referral still held for a consent
        the partner never had (held_events.py) is not listed: the partner has not heard of it.
        A plain read: what it shows may move the next moment, and answers are checked under the
        referral's row lock, not against this list."""
        return await self.conn.fetch(
            "SELECT r.referral_id, r.case_id, r.municipality_code, r.need, r.status, r.updated_at, "
            "       req.accept_by, ans.response AS last_response, ans.created_at AS last_response_at "
            "FROM partner_referrals r "
            "LEFT JOIN LATERAL (SELECT (d.body::jsonb -> 'data' ->> 'accept_by')::timestamptz AS accept_by "
            "    FROM deliveries d WHERE d.partner_id = r.partner_id AND d.case_id = r.case_id "
            "    AND d.event_type = $4 AND d.body::jsonb -> 'data' ->> 'referral_id' = r.referral_id::text "
            "    LIMIT 1) req ON true "
            "LEFT JOIN LATERAL (SELECT a.response, a.created_at FROM responses a "
            "    WHERE a.referral_id = r.referral_id AND a.partner_id = r.partner_id "
            "    ORDER BY a.created_at DESC, a.response_id DESC LIMIT 1) ans ON true "
            "WHERE r.partner_id = $1 AND ($2::uuid IS NULL OR r.referral_id < $2) "
            "AND EXISTS (SELECT 1 FROM permissions g WHERE g.case_id = r.case_id AND g.partner_id = r.partner_id) "
            "ORDER BY r.referral_id DESC LIMIT $3", partner_id, before, limit, REQUESTED)


__all__ = ["Referrals"]
