"""The case lock around every fan-out handler (the rule, and why: adapters/held_events.py)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from tsunagu_contracts import Envelope
from tsunagu_partners.adapters.held_events import lock_case

H = TypeVar("H", bound=Callable[[asyncpg.Connection, Envelope[Any]], Awaitable[Any]])


def case_locked(handler: H) -> H:
    """The handler takes its event's case lock before anything else it does."""
    @functools.wraps(handler)
    async def locked(conn: asyncpg.Connection, envelope: Envelope[Any]) -> Any:
        await lock_case(conn, envelope.data.case_id)
        return await handler(conn, envelope)
    return locked  # type: ignore[return-value]


__all__ = ["case_locked"]
