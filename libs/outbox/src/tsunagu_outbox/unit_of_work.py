"""A unit of work: one transaction, a service's repository over its connection, and the events the
change emits, appended to the outbox in that same transaction when the work is done.

Handlers take a unit of work and call `uow.repo` and `uow.emit`; they never see the connection, so
their unit tests run on an in-memory fake with the same two attributes.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import asyncpg

from tsunagu_contracts import Envelope, Event
from tsunagu_outbox.store import append

R = TypeVar("R")


class UnitOfWork(Generic[R]):
    """The repository to change things with, and the events the change emits."""

    def __init__(self, conn: asyncpg.Connection, repo: R):
        self.conn, self.repo = conn, repo
        self.events: list[Event] = []

    def emit(self, *events: Event) -> None:
        self.events.extend(events)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the work that may be refused alone: its changes and its events are undone, the rest stays."""
        emitted = len(self.events)
        try:
            async with self.conn.transaction():
                yield
        except BaseException:
            del self.events[emitted:]
            raise

    async def flush(self) -> None:
        """Append what was emitted to the outbox; call inside the transaction, before it commits."""
        if self.events:
            await append(self.conn, *self.events)
            self.events.clear()


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, repository: Callable[[asyncpg.Connection], R]
                       ) -> AsyncIterator[UnitOfWork[R]]:
    """A new transaction; committed with its events when the block ends, rolled back if it raises."""
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, repository(conn))
        yield uow
        await uow.flush()


def in_unit_of_work(repository: Callable[[asyncpg.Connection], R],
                    handler: Callable[[UnitOfWork[R], Any], Awaitable[None]]
                    ) -> Callable[[asyncpg.Connection, Envelope], Awaitable[None]]:
    """A consumer's `(conn, envelope)` handler: its transaction (with the applied-event record)
    becomes the unit of work `handler` runs in, with the event's data."""
    async def apply(conn: asyncpg.Connection, envelope: Envelope) -> None:
        uow = UnitOfWork(conn, repository(conn))
        await handler(uow, envelope.data)
        await uow.flush()
    return functools.wraps(getattr(handler, "func", handler))(apply)  # a partial's function names it
