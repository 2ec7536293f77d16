"""Bounded waiting for things that happen asynchronously (events crossing services)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool], attempts: int = 150,
                     pause: float = 0.2) -> T:
    """Probe until the condition holds; bounded, so a broken flow fails instead of hanging."""
    value = await probe()
    for _ in range(attempts):
        if until(value):
            return value
        await asyncio.sleep(pause)
        value = await probe()
    raise AssertionError(f"condition not met after {attempts} probes; last value: {value!r}")

