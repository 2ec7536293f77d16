"""Fakes the handlers run on in unit tests: an in-memory repository and unit of work with the same
methods as the PostgreSQL ones. Locks are not modelled: each test runs one handler at a time."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tsunagu_teststack.fakes import FakeUnitOfWork

from tsunagu_referral.domain.model import Silence
from tsunagu_referral.domain.referral import ACTIVE, Status
from tsunagu_referral.domain.routing import default_routes


class FakeRepository:
    def __init__(self):
        self.sheets, self.referrals = {}, {}
        defaults, _ = default_routes()
        self.table = {need: list(recipients) for need, recipients in defaults.items()}

    async def sheet(self, case_id, *, lock=False):
        return self.sheets.get(case_id)

    async def open_sheet(self, sheet):
        self.sheets[sheet.case_id] = sheet
        return sheet

    async def add_needs(self, case_id, needs, *, reopen=False):
        sheet = self.sheets[case_id]
        added = [n.value for n in needs if n.value not in sheet.needs]
        sheet = replace(sheet, needs=sheet.needs + added)
        if reopen:
            sheet = replace(sheet, closed_at=None, closure_reason=None)
        self.sheets[case_id] = sheet
        return sheet

    async def close_sheet(self, case_id, reason, *, at):
        self.sheets[case_id] = replace(self.sheets[case_id], closed_at=at, closure_reason=reason)

    async def record_contact(self, case_id, at, *, keep_later=False):
        sheet = self.sheets.get(case_id)
        if sheet is not None:
            last = sheet.last_contact_at
            self.sheets[case_id] = replace(sheet, last_contact_at=max(last, at) if keep_later and last else at)

    async def silent_sheets(self, horizon, limit):
        silent = [Silence(s.case_id, s.municipality_code, s.last_contact_at, s.last_contact_at or s.opened_at)
                  for s in self.sheets.values() if not s.closed and (s.last_contact_at or s.opened_at) < horizon]
        return silent[:limit]

    async def mark_contact_overdue(self, case_ids, at):
        pass

    async def referral(self, referral_id):
        return self.referrals.get(referral_id)

    async def referral_for_action(self, referral_id):
        referral = self.referrals.get(referral_id)
        return (referral, self.sheets[referral.case_id]) if referral else None

    async def referrals_of_case(self, case_id):
        return sorted((r for r in self.referrals.values() if r.case_id == case_id), key=lambda r: r.requested_at)

    async def latest_active(self, case_id, need):
        active = [r for r in await self.referrals_of_case(case_id) if r.need is need and r.status in ACTIVE]
        return active[-1] if active else None

    async def active_needs(self, case_id):
        return {r.need for r in self.referrals.values() if r.case_id == case_id and r.status in ACTIVE}

    async def asked(self, case_id, need):
        return [r.recipient for r in self.referrals.values() if r.case_id == case_id and r.need is need]

    async def next_rank(self, case_id, need):
        return max((r.candidate_rank for r in self.referrals.values() if r.case_id == case_id and r.need is need),
                   default=0) + 1

    async def add_referral(self, referral):
        self.referrals[referral.referral_id] = referral

    async def update_referral(self, referral_id, status, detail, *, at):
        r = self.referrals[referral_id]
        self.referrals[referral_id] = replace(
            r, status=status, updated_at=at,
            decline_reason=detail.reason.value if detail.reason else r.decline_reason,
            contact_method=detail.method.value if detail.method else r.contact_method,
            outcome=detail.outcome.value if detail.outcome else r.outcome)

    async def overdue_referrals(self, now, limit):
        due = [(r, self.sheets[r.case_id].municipality_code) for r in self.referrals.values()
               if r.status is Status.REQUESTED and r.overdue_at is None and r.accept_by < now
               and not self.sheets[r.case_id].closed]
        return due[:limit]

    async def mark_overdue(self, referral_ids, at):
        for referral_id in referral_ids:
            self.referrals[referral_id] = replace(self.referrals[referral_id], overdue_at=at)

    async def routes(self, need):
        return list(enumerate(self.table.get(need, []), start=1))

    async def routing_table(self):
        return dict(self.table)

    async def set_routes(self, need, candidates):
        self.table[need] = list(candidates)




@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(FakeRepository())
