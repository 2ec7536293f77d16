"""`Idempotency-Key`: a retried POST returns the first answer instead of doing the work twice.

The key is claimed inside the request's own transaction. A concurrent retry waits on the row lock
until the first commits, then reads its answer; a first attempt that failed leaves no claim.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

import asyncpg

from tsunagu_servicehost.errors import Refused


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


async def once(conn: asyncpg.Connection, principal: str, key: str | None, fingerprint: bytes,
               work: Callable[[], Awaitable[tuple[int, dict]]]) -> tuple[int, dict]:
    """Run `work` once per (principal, key), inside the caller's transaction."""
    if key is None:
        return await work()
    if not 1 <= len(key) <= 200:
        raise Refused.invalid("Idempotency-Key", "Idempotency-Key は1〜200文字で指定してください。",
                              "Idempotency-Key must be 1 to 200 characters")
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true", principal, key, fingerprint)
    if not claimed:
        row = await conn.fetchrow("SELECT request_hash, status, response FROM idempotency_keys "
                                  "WHERE principal = $1 AND key = $2", principal, key)
        if bytes(row["request_hash"]) != fingerprint:
            raise Refused(422, "同じ Idempotency-Key で異なる内容が送られました。",
                          "this Idempotency-Key was used for a different request", "Idempotency-Key")
        return row["status"], json.loads(row["response"])
    status, body = await work()
    await conn.execute("UPDATE idempotency_keys SET status = $3, response = $4::jsonb "
                       "WHERE principal = $1 AND key = $2", principal, key, status, json.dumps(body))
    return status, body
