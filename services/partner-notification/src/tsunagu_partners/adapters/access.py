"""What a partner may act on, read from the database: its referrals and the permissions on their cases.

Concurrency: these reads take no locks of their own. The callers that must not be overtaken take
one first and decide under it: an answer holds the referral's row lock (`Referrals.lock_status`,
FOR UPDATE on partner_referrals) and a detail fetch the case's advisory lock
(`HeldEvents.lock_case`), the locks the consent and case events take before they change what is
read here.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg


class PartnerAccess:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def referral(self, partner_id: UUID, referral_id: UUID) -> asyncpg.Record | None:
        """case_id, municipality_code, need and status of the referral, when addressed to the partner."""
        return await self.conn.fetchrow("SELECT case_id, municipality_code, need, status FROM partner_referrals "
                                        "WHERE referral_id = $1 AND partner_id = $2", referral_id, partner_id)

    async def grant(self, case_id: UUID, partner_id: UUID, today: date, purposes: list[str],
                    preferred_purpose: str) -> asyncpg.Record | None:
        """The basis and purpose that let the partner see the case for one of `purposes` (any basis will do)."""
        return await self.conn.fetchrow(
            "SELECT basis, purpose FROM permissions WHERE case_id = $1 AND partner_id = $2 AND revoked_at IS NULL "
            "AND (valid_until IS NULL OR valid_until >= $3) AND (basis <> 'consent' OR purpose = ANY($4::text[])) "
            # Consent before a statutory basis; among consents, the one given for the need's own support
            # (what it lets the partner receive is the most this referral may get).
            "ORDER BY basis = 'consent' DESC, purpose = $5 ASC, grant_id LIMIT 1",
            case_id, partner_id, today, purposes, preferred_purpose)

    async def other_purposes(self, case_id: UUID, partner_id: UUID, today: date) -> list[str] | None:
        """The purposes of every valid permission the partner holds on the case, whatever they are for."""
        return await self.conn.fetchval(
            "SELECT array_agg(DISTINCT purpose ORDER BY purpose) FROM permissions WHERE case_id = $1 "
            "AND partner_id = $2 AND revoked_at IS NULL AND (valid_until IS NULL OR valid_until >= $3)",
            case_id, partner_id, today)


__all__ = ["PartnerAccess"]
