"""The in-memory unit of work handlers' unit tests run on: the service's fake repository, and the
events the handler emitted, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FakeUnitOfWork:
    def __init__(self, repo):
        self.repo = repo
        self.events = []

    def emit(self, *events):
        self.events.extend(events)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # The handlers refuse before they change anything, so only the events are rolled back.
        emitted = len(self.events)
        try:
            yield
        except BaseException:
            del self.events[emitted:]
            raise

    def of(self, event_type):
        """The emitted events of one type."""
        return [e for e in self.events if isinstance(e, event_type)]
