"""Fakes the handlers run on in unit tests: an in-memory repository and unit of work with the same
methods as the PostgreSQL ones."""

from __future__ import annotations

import pytest

from tsunagu_teststack.fakes import FakeUnitOfWork

from dataclasses import replace
from tsunagu_contracts.codes import TenancyStage
from tsunagu_housing.domain.model import DueRule


class FakeRepository:
    def __init__(self):
        self.cases, self.members_by_id, self.supports, self.tenancies = {}, {}, {}, {}
        self.tasks, self.rules_by_id, self.check_ins, self.stage_log = {}, {}, [], []

    async def remember_case(self, case):
        self.cases.setdefault(case.case_id, case)

    async def case(self, case_id):
        return self.cases.get(case_id)

    async def add_member(self, member):
        if any(m.recipient == member.recipient for m in self.members_by_id.values()):
            return False
        self.members_by_id[member.member_id] = member
        return True

    async def member(self, member_id):
        return self.members_by_id.get(member_id)

    async def members_taking_on(self, role):
        return sorted((m for m in self.members_by_id.values() if role in m.takes_on), key=lambda m: m.member_id)

    async def open_supports_by_lead(self):
        counts = {}
        for s in self.supports.values():
            if s.stage is not TenancyStage.ENDED:
                counts[s.lead_member_id] = counts.get(s.lead_member_id, 0) + 1
        return counts

    async def open_tasks_by_member(self, role):
        counts = {}
        for t in self.tasks.values():
            if t["kind"] is role and not t["done"]:
                counts[t["member_id"]] = counts.get(t["member_id"], 0) + 1
        return counts

    async def partner_is_involved(self, support_id, partner_id):
        support = self.supports.get(support_id)
        members = [self.members_by_id[support.lead_member_id]] if support else []
        members += [self.members_by_id[t["member_id"]] for t in self.tasks.values() if t["support_id"] == support_id]
        return any(m.partner_id == partner_id for m in members)

    async def insert_support(self, support, opened_by):
        if await self.open_support_of_case(support.case_id):
            return False
        self.supports[support.support_id] = support
        return True

    async def open_support_of_case(self, case_id, *, lock=False):
        return next((s for s in self.supports.values()
                     if s.case_id == case_id and s.stage is not TenancyStage.ENDED), None)

    async def support(self, support_id, *, lock=False):
        return self.supports.get(support_id)

    async def link_referral(self, support_id, referral_id):
        self.supports[support_id] = replace(self.supports[support_id], referral_id=referral_id)

    async def move(self, support, to, *, at, by, reason, end_reason):
        self.supports[support.support_id] = replace(support, stage=to, stage_since=at)
        await self.record_stage(support.support_id, support.stage, to, at=at, by=by, reason=reason,
                                end_reason=end_reason)

    async def record_stage(self, support_id, from_stage, to, *, at, by, reason=None, end_reason=None):
        self.stage_log.append((support_id, from_stage, to, by, reason, end_reason))

    async def set_lead(self, support_id, member_id):
        self.supports[support_id] = replace(self.supports[support_id], lead_member_id=member_id)

    async def add_tenancy(self, tenancy, home):
        self.tenancies[tenancy.support_id] = (tenancy, home)

    async def tenancy(self, support_id):
        found = self.tenancies.get(support_id)
        return found[0] if found else None

    async def end_tenancy(self, tenancy_id, ended_on, reason):
        for support_id, (tenancy, home) in self.tenancies.items():
            if tenancy.tenancy_id == tenancy_id:
                self.tenancies[support_id] = (replace(tenancy, ended_on=ended_on), home)

    async def add_task(self, task_id, support_id, member_id, kind, *, due_on, at, by):
        self.tasks[task_id] = {"support_id": support_id, "member_id": member_id, "kind": kind, "done": False}

    async def task_member(self, support_id, task_id):
        task = self.tasks.get(task_id)
        return (task["member_id"], task["done"]) if task and task["support_id"] == support_id else None

    async def complete_task(self, task_id, *, at, by):
        self.tasks[task_id]["done"] = True

    async def replace_rules(self, support_id, rules, *, at):
        self.rules_by_id = {k: r for k, r in self.rules_by_id.items() if r.support_id != support_id}
        self.rules_by_id.update({r.rule_id: r for r in rules})

    async def rules(self, support_id, *, kind=None, lock=False):
        return [r for r in self.rules_by_id.values() if r.support_id == support_id and kind in (None, r.kind)]

    async def set_due(self, rule_id, due_at):
        self.rules_by_id[rule_id] = replace(self.rules_by_id[rule_id], due_at=due_at)

    async def stop_rules(self, support_id):
        for rule in await self.rules(support_id):
            await self.set_due(rule.rule_id, None)

    async def due_rules(self, now, limit):
        due = []
        for r in self.rules_by_id.values():
            support, tenancy = self.supports[r.support_id], await self.tenancy(r.support_id)
            if (r.due_at is not None and r.due_at + r.rule.grace < now and tenancy and tenancy.ended_on is None
                    and support.stage is not TenancyStage.ENDED):
                lead = self.members_by_id[support.lead_member_id]
                due.append(DueRule(r, support.case_id, support.municipality_code, tenancy.tenancy_id,
                                   lead.member_id, lead.recipient))
        return due[:limit]

    async def add_check_in(self, check_in_id, support_id, tenancy_id, **fields):
        self.check_ins.append({"check_in_id": check_in_id, "support_id": support_id, **fields})

    async def last_result(self, support_id):
        recorded = [c for c in self.check_ins if c["support_id"] == support_id and c["status"] == "recorded"]
        return max(recorded, key=lambda c: c["at"])["result"] if recorded else None




class FakeSealer:
    def seal(self, data: dict) -> bytes:
        return repr(data).encode()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(FakeRepository())


@pytest.fixture
def sealer() -> FakeSealer:
    return FakeSealer()
