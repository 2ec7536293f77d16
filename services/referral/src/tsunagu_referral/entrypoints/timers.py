"""The timer loop: checks the deadlines kept in the database, every few seconds, in every instance."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from tsunagu_referral.adapters.repository import unit_of_work
from tsunagu_referral.handlers.follow_ups import open_due_follow_ups
from tsunagu_referral.handlers.reports import project_appended
from tsunagu_referral.handlers.timers import raise_contact_overdue, raise_overdue_referrals
from tsunagu_servicehost import Runtime

log = logging.getLogger("tsunagu.referral.timers")


async def run_timers(runtime: Runtime, *, interval: float, contact_days: int) -> None:
    while True:
        try:
            async with unit_of_work(runtime.db, on_append=project_appended) as uow:
                now = datetime.now(UTC)
                overdue = await raise_overdue_referrals(uow, now=now)
                silent = await raise_contact_overdue(uow, now=now, contact_days=contact_days)
                due = await open_due_follow_ups(uow, now=now)
            if overdue or silent or due:
                log.info("timers: %d referral(s) overdue, %d case(s) without contact, %d follow-up(s) due",
                         overdue, silent, due)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("timer check failed")
        await asyncio.sleep(interval)
