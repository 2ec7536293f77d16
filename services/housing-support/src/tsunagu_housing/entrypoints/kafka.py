"""What housing support consumes: referral's sheets (to know a case) and its housing referrals."""

from __future__ import annotations

from tsunagu_contracts import REFERRALS, Envelope, ReferralRequested, ReferralSheetOpened
from tsunagu_housing.adapters.repository import UnitOfWork
from tsunagu_housing.handlers import supports
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import EventConsumer


def in_unit_of_work(handler):
    """The consumer's transaction (with the applied-event record) becomes the handler's unit of work."""
    async def apply(conn, envelope: Envelope) -> None:
        uow = UnitOfWork(conn)
        await handler(uow, envelope.data)
        await uow.flush()
    apply.__name__ = handler.__name__
    return apply


def subscribe(runtime: Runtime) -> None:
    EventConsumer(runtime, REFERRALS, {
        ReferralSheetOpened: in_unit_of_work(supports.on_sheet_opened),
        ReferralRequested: in_unit_of_work(supports.on_referral_requested),
    }).subscribe()
