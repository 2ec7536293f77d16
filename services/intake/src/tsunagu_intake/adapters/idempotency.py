"""`Idempotency-Key`: a retried POST returns the first answer instead of doing the work twice.

The key is claimed inside the request's own transaction, by the primary key of `idempotency_keys`
(adapters/repository.py). A concurrent retry waits for the first to commit, then reads its answer;
a first attempt that failed leaves no claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from tsunagu_servicehost.errors import Rejected


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


async def once(repo, principal: str, key: str | None, fingerprint: bytes,
               work: Callable[[], Awaitable[tuple[int, dict]]]) -> tuple[int, dict]:
    """Run `work` once per (principal, key), inside the transaction `repo` works in."""
    if key is None:
        return await work()
    if not 1 <= len(key) <= 200:
        raise Rejected.invalid("Idempotency-Key", "Idempotency-Key は1〜200文字で指定してください。",
                               "Idempotency-Key must be 1 to 200 characters")
    if not await repo.claim_idempotency_key(principal, key, fingerprint):
        claimed_for, status, body = await repo.idempotent_answer(principal, key)
        if claimed_for != fingerprint:
            raise Rejected.invalid("Idempotency-Key", "同じ Idempotency-Key で異なる内容が送られました。",
                                   "this Idempotency-Key was used for a different request")
        return status, body
    status, body = await work()
    await repo.record_idempotent_answer(principal, key, status, body)
    return status, body
