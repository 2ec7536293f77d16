"""`python -m <service> replay-outbox`: list the service's parked outbox rows, or release them.

A row is parked when the broker refused it `outbox_max_attempts` times (a topic that does not exist,
a record too large); the rows behind it on its topic and key wait for it. Once the cause is fixed,
releasing puts it back in line at once with a fresh count of attempts (the relay would otherwise
try it again only every `outbox_parked_retry_s`).
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from tsunagu_outbox import parked, release_parked
from tsunagu_servicehost.service import Service
from tsunagu_servicehost.settings import ServiceSettings


def _line(row: asyncpg.Record) -> str:
    return (f"  {row['event_id']} {row['event_type']} -> {row['topic']}: {row['attempts']} attempt(s), "
            f"{row['behind']} row(s) waiting behind it; last error: {row['last_error']}")


async def release(settings: ServiceSettings, event_ids: list[UUID] | None, *, list_only: bool) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        if list_only:
            return await parked(conn)
        async with conn.transaction():
            return await release_parked(conn, event_ids)
    finally:
        await conn.close()


def release_command(service: Service, settings: ServiceSettings, event_ids: list[UUID] | None,
                    list_only: bool) -> None:
    rows = asyncio.run(release(settings, event_ids, list_only=list_only))
    for row in rows:
        print(_line(row))
    if list_only:
        print(f"[tsunagu] {service.name}: {len(rows)} parked outbox row(s)")
    else:
        print(f"[tsunagu] {service.name}: {len(rows)} parked outbox row(s) released; the relay publishes them now")
