"""The case lock around every fan-out handler (the rule, and why: adapters/held_events.py)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tsunagu_contracts import Envelope

H = TypeVar("H", bound=Callable[[Any, Envelope[Any]], Awaitable[Any]])


def case_locked(handler: H) -> H:
    """The handler takes its event's case lock before anything else it does. A handler that calls
    another (`on_consultation` calling `fan_out`), or a batch's next event of the case, does not ask
    the database again: the transaction remembers the locks it holds (`HeldEvents.lock_case`)."""
    @functools.wraps(handler)
    async def locked(uow, envelope: Envelope[Any]) -> Any:
        await uow.repo.held.lock_case(envelope.data.case_id)
        return await handler(uow, envelope)
    return locked  # type: ignore[return-value]


__all__ = ["case_locked"]
