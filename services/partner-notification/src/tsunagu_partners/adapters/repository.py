"""partner-notification's tables over one transaction, and the unit of work around it.

The repository is the service's adapters over one connection, each keeping its SQL with the
concurrency rule beside it: the case's advisory lock and held events (held_events.py), permissions
and the case's needs, deliveries (idempotent queueing, the sender's lease), the copy of each
referral (its row lock), the registry, the partner's access reads and the provisions.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import asyncpg

from tsunagu_outbox import UnitOfWork
from tsunagu_outbox import unit_of_work as outbox_unit_of_work
from tsunagu_partners.adapters.access import PartnerAccess
from tsunagu_partners.adapters.deliveries import Deliveries
from tsunagu_partners.adapters.held_events import HeldEvents
from tsunagu_partners.adapters.permissions import Permissions
from tsunagu_partners.adapters.provisions import Provisions
from tsunagu_partners.adapters.referrals import Referrals
from tsunagu_partners.adapters.registry import Registry


class Repository:
    def __init__(self, conn: asyncpg.Connection):
        self.held = HeldEvents(conn)
        self.permissions = Permissions(conn)
        self.deliveries = Deliveries(conn)
        self.referrals = Referrals(conn)
        self.registry = Registry(conn)
        self.access = PartnerAccess(conn)
        self.provisions = Provisions(conn)


def unit_of_work(pool: asyncpg.Pool) -> AbstractAsyncContextManager[UnitOfWork[Repository]]:
    """A new transaction over partner-notification's tables; committed with its events when the block ends."""
    return outbox_unit_of_work(pool, Repository)


__all__ = ["Repository", "unit_of_work"]
