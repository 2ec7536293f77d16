"""Partners and their subscriptions, as stored.

Concurrency: registration inserts rows under a fresh partner id, so nothing races it. A
subscription is changed by one UPDATE, its own row lock: the last of two changes wins whole.
Disabling a webhook after a 410 (the sender) and enabling it again (a coordinator) are single
UPDATEs of `webhook_disabled_at` too; the later one wins, which is the one a person asked for last.

Credentials: a rotation is one UPDATE that moves the current credential into the `previous_*`
columns and writes the new one, reading and writing the row under its row lock. Two rotations at
once therefore run one after the other (the second re-reads the row the first committed): the
first's new credential becomes the second's previous one, both answers hold a working credential,
and the credential before them both ends at once (rotating twice is how a leaked one is ended
without waiting for the overlap). A change of webhook URL is a single UPDATE too.

Deactivation takes the partner's row lock (`deactivate`, an UPDATE), and the fan-out takes a share
lock on the row of every partner it delivers to (`lock_receiving`) before it queues anything, so
a fan-out that saw the partner active has committed its deliveries before the deactivation goes on
to cancel them, and a fan-out after it sees the partner deactivated. The lock order is always the
partner's row before any delivery row.

A webhook test takes its partner's one slot with a single UPDATE that succeeds only when the last
test is `min_interval_s` old (`take_webhook_test`): two tests at once, on one instance or two, queue
on the row lock, and the second re-reads the row the first committed and finds the slot taken.
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
        """The active partner whose current token, or previous one still within its overlap, this is."""
        return await self.conn.fetchval(
            "SELECT partner_id FROM partners WHERE deactivated_at IS NULL AND (api_token_hash = $1 "
            "OR (previous_api_token_hash = $1 AND previous_api_token_valid_until > now()))", api_token_hash)

    async def receiving(self, partner_id: UUID) -> asyncpg.Record | None:
        """Where the active partner receives: partner_id, webhook_url, kafka_topic."""
        return await self.conn.fetchrow("SELECT partner_id, webhook_url, kafka_topic FROM partners "
                                        "WHERE partner_id = $1 AND deactivated_at IS NULL", partner_id)

    async def lock_receiving(self, partner_ids: list[UUID]) -> set[UUID]:
        """Share-locks the rows of the partners among `partner_ids` still active, and returns them.

        FOR SHARE: fan-outs do not wait for one another, only a deactivation waits for them (and
        they for it). In partner id order, though shared locks never wait on each other."""
        rows = await self.conn.fetch("SELECT partner_id FROM partners WHERE partner_id = ANY($1::uuid[]) "
                                     "AND deactivated_at IS NULL ORDER BY partner_id FOR SHARE", partner_ids)
        return {r["partner_id"] for r in rows}

    async def state(self, partner_id: UUID) -> asyncpg.Record | None:
        """webhook_url, whether a webhook secret is set, kafka_topic and deactivated_at."""
        return await self.conn.fetchrow("SELECT webhook_url, webhook_secret IS NOT NULL AS has_secret, kafka_topic, "
                                        "deactivated_at FROM partners WHERE partner_id = $1", partner_id)

    async def rotate_api_token(self, partner_id: UUID, new_hash: bytes, overlap_s: float) -> datetime | None:
        """The current token stays valid for `overlap_s` beside the new one; None when the partner is
        not an active one. One UPDATE: see the module's rule for two rotations at once."""
        return await self.conn.fetchval(
            "UPDATE partners SET previous_api_token_hash = api_token_hash, api_token_hash = $2, "
            "previous_api_token_valid_until = now() + make_interval(secs => $3) "
            "WHERE partner_id = $1 AND deactivated_at IS NULL RETURNING previous_api_token_valid_until",
            partner_id, new_hash, overlap_s)

    async def rotate_webhook_secret(self, partner_id: UUID, sealed: bytes, overlap_s: float) -> datetime | None:
        """As `rotate_api_token`, for the sealed webhook secret; None when the partner is not an active
        one with a webhook."""
        return await self.conn.fetchval(
            "UPDATE partners SET previous_webhook_secret = webhook_secret, webhook_secret = $2, "
            "previous_webhook_secret_valid_until = now() + make_interval(secs => $3) "
            "WHERE partner_id = $1 AND deactivated_at IS NULL AND webhook_secret IS NOT NULL "
            "RETURNING previous_webhook_secret_valid_until", partner_id, sealed, overlap_s)

    async def set_webhook(self, partner_id: UUID, url: str, sealed_secret_if_none: bytes | None) -> bool | None:
        """Points the active partner's webhook at `url` and lifts a 410's disabling (a new endpoint);
        a partner without a secret yet gets `sealed_secret_if_none`. Returns whether that secret was
        the one stored; None when not an active partner."""
        return await self.conn.fetchval(
            "UPDATE partners SET webhook_url = $2, webhook_disabled_at = NULL, "
            "webhook_secret = coalesce(webhook_secret, $3) WHERE partner_id = $1 AND deactivated_at IS NULL "
            "RETURNING coalesce(webhook_secret = $3, false)", partner_id, url, sealed_secret_if_none)

    async def deactivate(self, partner_id: UUID) -> asyncpg.Record | None:
        """Marks the partner deactivated (once; again is harmless) under its row lock. Returns its
        kafka_topic and deactivated_at, None when there is no such partner."""
        return await self.conn.fetchrow(
            "UPDATE partners SET deactivated_at = coalesce(deactivated_at, now()) WHERE partner_id = $1 "
            "RETURNING kafka_topic, deactivated_at", partner_id)

    # Reads for coordinators: plain SELECTs of committed rows; nothing here is written.
    _VIEW = ("SELECT p.partner_id, p.name, p.need_categories, p.areas, p.registered_at, p.deactivated_at, "
             "p.webhook_url, p.webhook_disabled_at, p.kafka_topic IS NOT NULL AS kafka_topic, p.contact, "
             "s.event_types AS subscribed_event_types, s.need_categories AS subscribed_need_categories, "
             "s.areas AS subscribed_areas FROM partners p LEFT JOIN subscriptions s USING (partner_id)")

    async def partners(self) -> list[asyncpg.Record]:
        """Every partner, active ones first, then by name."""
        return await self.conn.fetch(self._VIEW + " ORDER BY p.deactivated_at IS NOT NULL, p.name, p.partner_id")

    async def partner(self, partner_id: UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow(self._VIEW + " WHERE p.partner_id = $1", partner_id)

    async def enable_webhook(self, partner_id: UUID) -> None:
        await self.conn.execute("UPDATE partners SET webhook_disabled_at = NULL WHERE partner_id = $1", partner_id)

    async def disable_webhook(self, partner_id: UUID) -> None:
        await self.conn.execute("UPDATE partners SET webhook_disabled_at = now() WHERE partner_id = $1", partner_id)

    async def take_webhook_test(self, partner_id: UUID, min_interval_s: float) -> asyncpg.Record | None:
        """Marks a webhook test as sent now and returns where and with which secrets to send it
        (webhook_url, webhook_secret, previous_webhook_secret while its overlap lasts,
        webhook_disabled_at); None when the partner is not an active one with a webhook, or was
        tested less than `min_interval_s` ago. One UPDATE under the row lock: see the module's rule."""
        return await self.conn.fetchrow(
            "UPDATE partners SET webhook_tested_at = now() WHERE partner_id = $1 AND deactivated_at IS NULL "
            "AND webhook_url IS NOT NULL AND webhook_secret IS NOT NULL "
            "AND (webhook_tested_at IS NULL OR webhook_tested_at <= now() - make_interval(secs => $2)) "
            "RETURNING webhook_url, webhook_secret, webhook_disabled_at, "
            "CASE WHEN previous_webhook_secret_valid_until > now() THEN previous_webhook_secret END "
            "AS previous_webhook_secret", partner_id, min_interval_s)

    async def webhook_test_state(self, partner_id: UUID) -> asyncpg.Record | None:
        """Why no test was taken: webhook_url, deactivated_at and the seconds since the last test."""
        return await self.conn.fetchrow(
            "SELECT webhook_url, deactivated_at, extract(epoch FROM now() - webhook_tested_at)::float8 AS since_s "
            "FROM partners WHERE partner_id = $1", partner_id)


__all__ = ["Registry"]
