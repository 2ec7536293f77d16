"""What housing support consumes: referral's sheets (to know a case) and its housing referrals."""

from __future__ import annotations

from tsunagu_contracts import REFERRALS, ReferralRequested, ReferralSheetOpened
from tsunagu_housing.adapters.repository import Repository
from tsunagu_housing.handlers import supports
from tsunagu_outbox import in_unit_of_work
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.consumer import EventConsumer


def subscribe(runtime: Runtime) -> None:
    EventConsumer(runtime, REFERRALS, {
        ReferralSheetOpened: in_unit_of_work(Repository, supports.on_sheet_opened),
        ReferralRequested: in_unit_of_work(Repository, supports.on_referral_requested),
    }).subscribe()
