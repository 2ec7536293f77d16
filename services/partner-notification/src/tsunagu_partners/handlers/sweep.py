"""The periodic sweep that releases held events once their partner may see them.

The consent and statutory-basis handlers release what was held for the partner themselves, under
the case's lock (adapters/held_events.py). The sweep is there for anything still left behind (a
release that failed, a path added later that forgot to release), so that nothing parked stays parked.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from uuid import UUID

from prometheus_client import CollectorRegistry, Counter, Gauge

from tsunagu_contracts.japan import japan_date
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.handlers.fan_out import release_held
from tsunagu_servicehost.consumer import INFRASTRUCTURE_ERRORS

log = logging.getLogger("tsunagu.partners.held")


class HeldSweeper:
    def __init__(self, new_uow: NewUnitOfWork, registry: CollectorRegistry, *, interval_s: float = 5.0,
                 batch: int = 100):
        self.new_uow, self.interval_s, self.batch = new_uow, interval_s, batch
        self.held = Gauge("tsunagu_partners_held_events",
                          "Events held until the partner they are addressed to may see them", registry=registry)
        self.released = Counter("tsunagu_partners_held_events_released",
                                "Held events the sweep released (the consent handlers release the rest)",
                                registry=registry)

    async def run(self) -> None:
        """Sweep every `interval_s` until cancelled; a database outage only pauses it."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("held-event sweep interrupted; retrying")
            await asyncio.sleep(self.interval_s)

    async def sweep(self, today: date | None = None) -> int:
        """One pass over at most `batch` (case, partner) pairs; returns how many events it released."""
        today = today or japan_date(datetime.now(UTC))
        async with self.new_uow() as uow:
            pairs = await uow.repo.held.releasable(today, self.batch)
        released = 0
        for pair in pairs:
            try:
                released += await self.release(pair["case_id"], pair["partner_id"])
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception:  # noqa: BLE001 - one event that cannot be fanned out does not stop the others
                log.exception("held events of case %s for partner %s could not be released",
                              pair["case_id"], pair["partner_id"])
        async with self.new_uow() as uow:
            still_held = await uow.repo.held.count()
        self.held.set(still_held)
        if released:
            self.released.inc(released)
            log.warning("sweep released %d held event(s) whose partner may now see them; %d still held",
                        released, still_held)
        return released

    async def release(self, case_id: UUID, partner_id: UUID) -> int:
        async with self.new_uow() as uow:
            if not await uow.repo.held.try_lock_case(case_id):
                return 0  # a consumer is on the case right now; it, or the next pass, releases them
            taken = await release_held(uow, case_id, partner_id)
            # Under the lock the pair's rows are this transaction's: what is there now was held again.
            return taken - await uow.repo.held.count(case_id, partner_id)


__all__ = ["HeldSweeper"]
