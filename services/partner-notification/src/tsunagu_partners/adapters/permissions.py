"""What lets a partner see a case (a consent for a purpose, or a statutory basis), and the case's needs.

Concurrency: every write here is made by a fan-out handler holding the case's advisory lock
(`HeldEvents.lock_case`), and every read that decides what to deliver or hold is made under it too;
so a consent recorded and a referral fanned out for one case happen one after the other. The
inserts are idempotent on the grant id (ON CONFLICT DO NOTHING), a revocation only sets
`revoked_at` once, and a case's needs only grow (an upsert that unions them).
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import asyncpg


class Permissions:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # the case's needs ------------------------------------------------------------------------

    async def remember_needs(self, case_id: UUID, person_ref: UUID, needs: list[str]) -> None:
        await self.conn.execute(
            "INSERT INTO case_needs (case_id, person_ref, needs) VALUES ($1, $2, $3) ON CONFLICT (case_id) DO UPDATE "
            "SET needs = ARRAY(SELECT DISTINCT unnest(case_needs.needs || EXCLUDED.needs))", case_id, person_ref, needs)

    async def add_need(self, case_id: UUID, need: str) -> None:
        await self.conn.execute("UPDATE case_needs SET needs = ARRAY(SELECT DISTINCT unnest(needs || $2::text[])) "
                                "WHERE case_id = $1", case_id, [need])

    async def case_needs(self, case_id: UUID) -> frozenset[str]:
        return frozenset(await self.conn.fetchval("SELECT needs FROM case_needs WHERE case_id = $1", case_id) or [])

    # permissions -----------------------------------------------------------------------------

    async def grant(self, grant_id: UUID, case_id: UUID, partner_id: UUID, person_ref: UUID, basis: str,
                    purpose: str, valid_until: date | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO permissions (grant_id, case_id, partner_id, person_ref, basis, purpose, valid_until) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            grant_id, case_id, partner_id, person_ref, basis, purpose, valid_until)

    async def revoke(self, grant_id: UUID, at: datetime) -> None:
        await self.conn.execute("UPDATE permissions SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL",
                                grant_id, at)

    async def remaining(self, case_id: UUID, partner_id: UUID, on: date) -> tuple[list[str], bool]:
        """The purposes of the consents the partner still holds on the case, and whether it holds a basis."""
        row = await self.conn.fetchrow(
            "SELECT coalesce(array_agg(DISTINCT purpose) FILTER (WHERE basis = 'consent'), '{}') AS consented, "
            "coalesce(bool_or(basis <> 'consent'), false) AS statutory FROM permissions WHERE case_id = $1 "
            "AND partner_id = $2 AND revoked_at IS NULL AND (valid_until IS NULL OR valid_until >= $3)",
            case_id, partner_id, on)
        return list(row["consented"]), row["statutory"]

    async def partners_allowed(self, case_id: UUID, on: date) -> list[asyncpg.Record]:
        """Active partners holding a valid permission on the case, with their subscription, the purposes
        consented to (`consented`) and whether a statutory basis is among them (`statutory`)."""
        return await self.conn.fetch(
            "SELECT p.partner_id, p.webhook_url, p.kafka_topic, s.event_types, s.need_categories, s.areas, "
            "array_agg(DISTINCT g.purpose) FILTER (WHERE g.basis = 'consent') AS consented, "
            "bool_or(g.basis <> 'consent') AS statutory "
            "FROM permissions g JOIN partners p USING (partner_id) JOIN subscriptions s USING (partner_id) "
            "WHERE g.case_id = $1 AND g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until >= $2) "
            "AND p.deactivated_at IS NULL GROUP BY p.partner_id, s.partner_id", case_id, on)


__all__ = ["Permissions"]
