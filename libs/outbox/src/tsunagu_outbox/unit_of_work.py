"""A unit of work: one transaction, a service's repository over its connection, and the events the
change emits, appended to the outbox in that same transaction when the work is done.

Handlers take a unit of work and call `uow.repo` and `uow.emit` (or `uow.forward`); they never see
the connection, so their unit tests run on an in-memory fake with the same attributes.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, NamedTuple, TypeVar
from uuid import UUID

import asyncpg

from tsunagu_contracts import Envelope, Event
from tsunagu_outbox.locks import remembering_locks, savepoint_locks
from tsunagu_outbox.store import append

R = TypeVar("R")


class Forward(NamedTuple):
    """An already published event sent on to another topic under its own id (outbox.append)."""
    event: Event
    topic: str
    source: str | None
    event_id: UUID


OnAppend = Callable[[asyncpg.Connection, list[Envelope]], Awaitable[None]]
"""What a service does with the events it appends, in the transaction that appends them (a read
model of its own events): each with the id it is published under."""


class UnitOfWork(Generic[R]):
    """The repository to change things with, and the events the change emits."""

    def __init__(self, conn: asyncpg.Connection, repo: R, on_append: OnAppend | None = None):
        self.conn, self.repo, self.on_append = conn, repo, on_append
        self.events: list[Event] = []
        self.forwarded: list[Forward] = []

    def emit(self, *events: Event) -> None:
        self.events.extend(events)

    def forward(self, event: Event, *, topic: str, source: str | None, event_id: UUID) -> None:
        self.forwarded.append(Forward(event, topic, source, event_id))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the work that may be refused alone: its changes and its events are undone, the rest stays."""
        emitted, forwarded = len(self.events), len(self.forwarded)
        try:
            with savepoint_locks():
                async with self.conn.transaction():
                    yield
        except BaseException:
            del self.events[emitted:], self.forwarded[forwarded:]
            raise

    async def flush(self) -> None:
        """Append what was emitted to the outbox; call inside the transaction, before it commits.

        Forwarded events go to topics of their own, so their order after the emitted ones changes
        no topic's order. `on_append` then gets every event appended, in that order."""
        appended = await append(self.conn, *self.events) if self.events else []
        self.events.clear()
        for f in self.forwarded:
            appended += await append(self.conn, f.event, source=f.source, topic=f.topic, event_id=f.event_id)
        self.forwarded.clear()
        if appended and self.on_append is not None:
            await self.on_append(self.conn, appended)


NewUnitOfWork = Callable[[], AbstractAsyncContextManager[UnitOfWork[Any]]]
"""Gives a new unit of work, its own transaction, at each call: for work done in several short
transactions (a sweep, a sender), or with none held across a network call."""


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, repository: Callable[[asyncpg.Connection], R], *,
                       on_append: OnAppend | None = None) -> AsyncIterator[UnitOfWork[R]]:
    """A new transaction; committed with its events when the block ends, rolled back if it raises."""
    async with pool.acquire() as conn, unit_of_work_on(conn, repository, on_append=on_append) as uow:
        yield uow


@asynccontextmanager
async def unit_of_work_on(conn: asyncpg.Connection, repository: Callable[[asyncpg.Connection], R], *,
                          on_append: OnAppend | None = None) -> AsyncIterator[UnitOfWork[R]]:
    """`unit_of_work` on a connection the caller already holds (a test's own)."""
    async with conn.transaction():
        with remembering_locks():
            uow = UnitOfWork(conn, repository(conn), on_append)
            yield uow
            await uow.flush()


def in_unit_of_work(repository: Callable[[asyncpg.Connection], R],
                    handler: Callable[[UnitOfWork[R], Any], Awaitable[None]], *, envelope: bool = False,
                    on_append: OnAppend | None = None) -> Callable[[asyncpg.Connection, Envelope], Awaitable[None]]:
    """A consumer's `(conn, envelope)` handler: its transaction (with the applied-event record)
    becomes the unit of work `handler` runs in, with the event's data (with the whole envelope,
    its id and source, when `envelope`: a handler that sends the event itself on)."""
    async def apply(conn: asyncpg.Connection, received: Envelope) -> None:
        uow = UnitOfWork(conn, repository(conn), on_append)
        await handler(uow, received if envelope else received.data)
        await uow.flush()
    return functools.wraps(getattr(handler, "func", handler))(apply)  # a partial's function names it
