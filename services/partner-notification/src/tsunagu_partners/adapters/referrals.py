"""partner-notification's copy of each referral addressed to a partner, and the partners' answers.

Concurrency: every change to a referral's status takes its row lock first (SELECT ... FOR UPDATE
on partner_referrals, `lock_status`) and decides under it. An answer holds it from its check to its
commit, and referral's events (referral_status.follow_referral) take the same one, so an answer and
an event about one referral happen one after the other, each seeing the other's result; two answers
for one referral are checked and written in turn, and their outbox ids (and so the order referral
applies them in) follow that order.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


class Referrals:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

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
