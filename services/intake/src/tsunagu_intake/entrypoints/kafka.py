"""What intake consumes: the referral service's events, for each case's view of its referrals."""

from __future__ import annotations

from tsunagu_contracts import REFERRALS
from tsunagu_intake.adapters.repository import Repository
from tsunagu_intake.handlers.referral_view import HANDLERS
from tsunagu_outbox import in_unit_of_work
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import EventConsumer


def subscribe(runtime: Runtime) -> None:
    EventConsumer(runtime, REFERRALS, {event: in_unit_of_work(Repository, handler)
                                       for event, handler in HANDLERS.items()}).subscribe()
