"""Partners and their subscriptions, as stored.

Concurrency: registration inserts rows under a fresh partner id, so nothing races it. A
subscription is changed by one UPDATE, its own row lock: the last of two changes wins whole.
Disabling a webhook after a 410 (the sender) and enabling it again (a coordinator) are single
UPDATEs of `webhook_disabled_at` too; the later one wins, which is the one a person asked for last.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


class Registry:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def add_partner(self, partner_id: UUID, name: str, need_categories: list[str], areas: list[str],
                          contact_json: str, api_token_hash: bytes, webhook_url: str | None,
                          sealed_webhook_secret: bytes | None, kafka_topic: str | None, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO partners (partner_id, name, need_categories, areas, contact, api_token_hash, webhook_url, "
            "webhook_secret, kafka_topic, registered_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)",
            partner_id, name, need_categories, areas, contact_json, api_token_hash, webhook_url,
            sealed_webhook_secret, kafka_topic, at)

    async def add_subscription(self, partner_id: UUID, event_types: list[str], need_categories: list[str],
                               areas: list[str]) -> None:
        await self.conn.execute("INSERT INTO subscriptions (partner_id, event_types, need_categories, areas) "
                                "VALUES ($1, $2, $3, $4)", partner_id, event_types, need_categories, areas)

    async def set_subscription(self, partner_id: UUID, event_types: list[str], need_categories: list[str],
                               areas: list[str]) -> bool:
        """False when the partner has no subscription (no such partner)."""
        status = await self.conn.execute(
            "UPDATE subscriptions SET event_types = $2, need_categories = $3, areas = $4 WHERE partner_id = $1",
            partner_id, event_types, need_categories, areas)
        return status != "UPDATE 0"

    async def partner_of_token_hash(self, api_token_hash: bytes) -> UUID | None:
        return await self.conn.fetchval("SELECT partner_id FROM partners WHERE api_token_hash = $1", api_token_hash)

    async def receiving(self, partner_id: UUID) -> asyncpg.Record | None:
        """Where the partner receives: partner_id, webhook_url, kafka_topic."""
        return await self.conn.fetchrow("SELECT partner_id, webhook_url, kafka_topic FROM partners "
                                        "WHERE partner_id = $1", partner_id)

    async def enable_webhook(self, partner_id: UUID) -> None:
        await self.conn.execute("UPDATE partners SET webhook_disabled_at = NULL WHERE partner_id = $1", partner_id)

    async def disable_webhook(self, partner_id: UUID) -> None:
        await self.conn.execute("UPDATE partners SET webhook_disabled_at = now() WHERE partner_id = $1", partner_id)


__all__ = ["Registry"]
