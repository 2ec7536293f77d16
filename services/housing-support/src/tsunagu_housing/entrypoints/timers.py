"""The missed check-in timer: every few seconds, in every instance; the cursors live in the database,
so a check-in that fell due while the service was stopped is reported after it comes back."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from tsunagu_housing.adapters.repository import unit_of_work
from tsunagu_housing.handlers.check_ins import report_missed
from tsunagu_servicehost import Runtime

log = logging.getLogger("tsunagu.housing.timers")


BATCH = 200


async def run_timers(runtime: Runtime, *, interval: float) -> None:
    while True:
        try:
            missed = 0
            while True:  # a full batch may leave more behind: drain before sleeping
                async with unit_of_work(runtime.db) as uow:
                    batch = await report_missed(uow, now=datetime.now(UTC), limit=BATCH)
                missed += batch
                if batch < BATCH:
                    break
            if missed:
                log.info("timers: %d check-in(s) missed", missed)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("check-in timer failed")
        await asyncio.sleep(interval)
