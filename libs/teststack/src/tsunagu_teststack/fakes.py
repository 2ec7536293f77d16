"""The in-memory unit of work handlers' unit tests run on: the service's fake repository, and the
events the handler emitted (and forwarded to other topics), in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tsunagu_outbox.unit_of_work import Forward


class FakeUnitOfWork:
    def __init__(self, repo):
        self.repo = repo
        self.events = []
        self.forwarded = []

    def emit(self, *events):
        self.events.extend(events)

    def forward(self, event, *, topic, source, event_id):
        self.forwarded.append(Forward(event, topic, source, event_id))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # The handlers refuse before they change anything, so only the events are rolled back.
        emitted, forwarded = len(self.events), len(self.forwarded)
        try:
            yield
        except BaseException:
            del self.events[emitted:], self.forwarded[forwarded:]
            raise

    def of(self, event_type):
        """The emitted events of one type."""
        return [e for e in self.events if isinstance(e, event_type)]
