"""Parked outbox rows: listing them, and putting them back in line once their cause is fixed."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from tsunagu_outbox.store import NOTIFY_CHANNEL

_PARKED = ("event_id, topic, record_key, headers->>'ce_type' AS event_type, attempts, last_error, parked_at, "
           "(SELECT count(*) FROM outbox b WHERE b.topic = o.topic AND b.record_key = o.record_key AND b.id > o.id "
           "AND b.published_at IS NULL) AS behind")


async def parked(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Parked rows, oldest first, with how many rows of their topic and key wait behind each."""
    return await conn.fetch(f"SELECT {_PARKED} FROM outbox o WHERE published_at IS NULL AND parked_at IS NOT NULL "
                            "ORDER BY id")


async def release_parked(conn: asyncpg.Connection, event_ids: Sequence[UUID] | None = None) -> list[asyncpg.Record]:
    """Make parked rows (all, or those with `event_ids`) due now with a fresh count of attempts.

    The relay publishes them before the rows behind them on their topic and key, which follow in
    order; a row that still fails is parked again after its attempts. Returns the released rows.
    """
    released = await conn.fetch(
        f"UPDATE outbox o SET parked_at = NULL, attempts = 0, next_attempt_at = NULL WHERE published_at IS NULL "
        f"AND parked_at IS NOT NULL AND ($1::uuid[] IS NULL OR event_id = ANY($1::uuid[])) RETURNING {_PARKED}",
        list(event_ids) if event_ids is not None else None)
    if released:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return released
