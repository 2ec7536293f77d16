"""What intake consumes: the referral service's events, for each case's view of its referrals."""

from __future__ import annotations

from tsunagu_contracts import REFERRALS
from tsunagu_intake.adapters.repository import Repository
from tsunagu_intake.handlers.referral_view import HANDLERS
from tsunagu_outbox import in_unit_of_work
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import BATCH, BatchEventConsumer


def subscribe(runtime: Runtime) -> None:
    # Batches: one transaction for what the broker has ready. The consumer is the view's single
    # writer, and each of its events changes one case's rows, so no batch waits on another.
    BatchEventConsumer(runtime, REFERRALS, {event: in_unit_of_work(Repository, handler)
                                            for event, handler in HANDLERS.items()}, max_records=BATCH).subscribe()
