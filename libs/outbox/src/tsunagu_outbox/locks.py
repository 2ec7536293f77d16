"""The transaction-scoped locks a transaction already holds, so that it asks for each only once.

A consumer's batch runs many events in one transaction, and each event's handler takes the lock
its rule needs (a case's, the reports' shared one). PostgreSQL grants a transaction a lock it holds
again at once, but each ask is still a round trip. Inside `remembering_locks` (a consumer's
transaction, a unit of work's), an adapter asks `holds(key)` first and calls `took(key)` after
locking. Outside one, nothing is remembered and every ask goes to the database, as before.

Only locks that last until the transaction ends may be remembered (`pg_advisory_xact_lock` and the
like). Rolling a savepoint back releases what was locked in it: a savepoint is entered with
`savepoint_locks`, which forgets them then too.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_HELD: ContextVar[set[Hashable] | None] = ContextVar("tsunagu_transaction_locks", default=None)


@contextmanager
def remembering_locks() -> Iterator[None]:
    """Enter right after the transaction begins and leave when it ends: the locks taken between are
    remembered for it alone (a transaction begun inside starts with none)."""
    token = _HELD.set(set())
    try:
        yield
    finally:
        _HELD.reset(token)


@contextmanager
def savepoint_locks() -> Iterator[None]:
    """Around a savepoint: if it is rolled back (the block raises), the locks taken in it are forgotten,
    as PostgreSQL releases them."""
    held = _HELD.get()
    before = set(held) if held is not None else None
    try:
        yield
    except BaseException:
        if held is not None:
            held.intersection_update(before)
        raise


def holds(key: Hashable) -> bool:
    """Whether the running transaction took the lock `key` already (never, outside `remembering_locks`)."""
    held = _HELD.get()
    return held is not None and key in held


def took(*keys: Hashable) -> None:
    """The running transaction now holds these locks until it ends."""
    held = _HELD.get()
    if held is not None:
        held.update(keys)


__all__ = ["holds", "remembering_locks", "savepoint_locks", "took"]
