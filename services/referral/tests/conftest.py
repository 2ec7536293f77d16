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
        self.sheets, self.referrals, self.permissions, self.follow_ups_by_referral = {}, {}, {}, {}
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

    # permissions
    async def grant(self, grant_id, case_id, partner_id, basis, purpose, valid_until):
        self.permissions.setdefault(grant_id, {"case_id": case_id, "partner_id": partner_id, "purpose": purpose,
                                               "valid_until": valid_until, "ended_at": None})

    async def end_permission(self, grant_id, at):
        if grant_id in self.permissions and self.permissions[grant_id]["ended_at"] is None:
            self.permissions[grant_id]["ended_at"] = at

    async def purposes_held(self, case_id, partner_id, on):
        return frozenset(p["purpose"] for p in self.permissions.values()
                         if p["case_id"] == case_id and p["partner_id"] == partner_id and p["ended_at"] is None
                         and (p["valid_until"] is None or p["valid_until"] >= on))

    # follow-ups
    async def schedule_follow_up(self, follow_up):
        existing = self.follow_ups_by_referral.get(follow_up.referral_id)
        if existing is None:
            self.follow_ups_by_referral[follow_up.referral_id] = follow_up
        elif existing.opened_at is None:
            self.follow_ups_by_referral[follow_up.referral_id] = replace(
                existing, due_on=follow_up.due_on, answer_by=follow_up.answer_by)

    async def cancel_follow_up(self, referral_id):
        if referral_id in self.follow_ups_by_referral and self.follow_ups_by_referral[referral_id].opened_at is None:
            del self.follow_ups_by_referral[referral_id]

    async def follow_up(self, follow_up_id, *, lock=False):
        return next((f for f in self.follow_ups_by_referral.values() if f.follow_up_id == follow_up_id), None)

    async def follow_up_of(self, referral_id):
        return self.follow_ups_by_referral.get(referral_id)

    async def falling_due(self, today, limit):
        due = [(f, self.sheets[f.case_id].municipality_code) for f in self.follow_ups_by_referral.values()
               if f.opened_at is None and f.due_on <= today and not self.sheets[f.case_id].closed]
        return due[:limit]

    async def open_follow_ups(self, follow_up_ids, at):
        for referral_id, f in self.follow_ups_by_referral.items():
            if f.follow_up_id in follow_up_ids:
                self.follow_ups_by_referral[referral_id] = replace(f, opened_at=at)

    async def answer_follow_up(self, follow_up_id, outcome, *, by, at, reopened_referral_id):
        for referral_id, f in self.follow_ups_by_referral.items():
            if f.follow_up_id == follow_up_id:
                self.follow_ups_by_referral[referral_id] = replace(
                    f, outcome=outcome, answered_at=at, reopened_referral_id=reopened_referral_id)

    async def follow_ups(self, state, counter, now, limit, case_id=None):
        waiting = [f for f in self.follow_ups_by_referral.values() if f.state(now) in {"due", "overdue"}
                   and state in {None, f.state(now)} and counter in {None, f.counter}
                   and case_id in {None, f.case_id}]
        return sorted(waiting, key=lambda f: (f.state(now) != "overdue", f.answer_by))[:limit]

    async def routes(self, need):
        return list(enumerate(self.table.get(need, []), start=1))

    async def routing_table(self):
        return dict(self.table)

    async def set_routes(self, need, candidates):
        self.table[need] = list(candidates)




@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(FakeRepository())
