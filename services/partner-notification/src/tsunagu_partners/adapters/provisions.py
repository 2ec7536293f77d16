"""The record of personal data provided to partners (個人情報保護法 art. 29): written once per fetch, never changed.

Concurrency: a provision is only inserted, under a fresh id, by a detail fetch holding its case's
advisory lock (`HeldEvents.lock_case`), so a consent withdrawn or a case closed is either seen by
the fetch's check or comes after the provision is committed.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


class Provisions:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def record(self, provision_id: UUID, partner_id: UUID, person_ref: UUID, case_id: UUID, referral_id: UUID,
                     items: list[str], basis: str, purpose: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO provisions (provision_id, partner_id, person_ref, case_id, referral_id, items, basis, "
            "purpose, provided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            provision_id, partner_id, person_ref, case_id, referral_id, items, basis, purpose, at)

    async def of_partner(self, partner_id: UUID, limit: int) -> list[asyncpg.Record]:
        """Newest first."""
        return await self.conn.fetch("SELECT provision_id, person_ref, case_id, referral_id, items, basis, purpose, "
                                     "provided_at FROM provisions WHERE partner_id = $1 ORDER BY provided_at DESC "
                                     "LIMIT $2", partner_id, limit)


__all__ = ["Provisions"]
