"""The case lock around every fan-out handler (the rule, and why: adapters/held_events.py)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from tsunagu_contracts import Envelope

H = TypeVar("H", bound=Callable[[Any, Envelope[Any]], Awaitable[Any]])


_LOCKED: ContextVar[frozenset] = ContextVar("tsunagu_partners_locked_cases", default=frozenset())
"""The cases whose lock the running handler's transaction already holds (set only while it runs)."""


def case_locked(handler: H) -> H:
    """The handler takes its event's case lock before anything else it does (once: a handler that
    calls another, `on_consultation` calling `fan_out`, does not ask for it again)."""
    @functools.wraps(handler)
    async def locked(uow, envelope: Envelope[Any]) -> Any:
        case_id = envelope.data.case_id
        if case_id in _LOCKED.get():
            return await handler(uow, envelope)
        await uow.repo.held.lock_case(case_id)
        token = _LOCKED.set(_LOCKED.get() | {case_id})
        try:
            return await handler(uow, envelope)
        finally:
            _LOCKED.reset(token)
    return locked  # type: ignore[return-value]


__all__ = ["case_locked"]
