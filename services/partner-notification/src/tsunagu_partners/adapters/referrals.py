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


__all__ = ["Referrals"]
