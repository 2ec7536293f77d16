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
        consented to (`consented`), whether a statutory basis is among them (`statutory`) and the
        case's needs (`case_needs`, the same in every row).

        Each partner's row is share-locked, in partner id order, and read again under the lock: a
        deactivation cannot slip between this read and the deliveries queued from it (the rule is in
        adapters/registry.py, `Registry.lock_receiving`). One statement for what a fan-out reads."""
        return await self.conn.fetch(
            "WITH allowed AS ("
            " SELECT partner_id, array_agg(DISTINCT purpose) FILTER (WHERE basis = 'consent') AS consented,"
            " bool_or(basis <> 'consent') AS statutory FROM permissions"
            " WHERE case_id = $1 AND revoked_at IS NULL AND (valid_until IS NULL OR valid_until >= $2)"
            " GROUP BY partner_id), "
            "receiving AS ("
            " SELECT partner_id, webhook_url, kafka_topic FROM partners"
            " WHERE partner_id IN (SELECT partner_id FROM allowed) AND deactivated_at IS NULL"
            " ORDER BY partner_id FOR SHARE) "
            "SELECT r.partner_id, r.webhook_url, r.kafka_topic, s.event_types, s.need_categories, s.areas, "
            "a.consented, a.statutory, (SELECT needs FROM case_needs WHERE case_id = $1) AS case_needs "
            "FROM receiving r JOIN allowed a USING (partner_id) JOIN subscriptions s USING (partner_id) "
            "ORDER BY r.partner_id", case_id, on)


__all__ = ["Permissions"]
