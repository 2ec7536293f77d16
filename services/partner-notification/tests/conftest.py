"""Fakes the partner handlers run on in unit tests: an in-memory repository with the same adapters
and methods as the one over PostgreSQL (adapters/repository.py), and the shared fake unit of work.
Locks are only recorded: each test runs one handler at a time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import count
from uuid import UUID

import pytest

from tsunagu_contracts import uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_teststack.fakes import FakeUnitOfWork


@dataclass
class Grant:
    grant_id: UUID
    case_id: UUID
    partner_id: UUID
    basis: str
    purpose: str
    valid_until: date | None = None
    revoked: bool = False

    def valid_on(self, day: date) -> bool:
        return not self.revoked and (self.valid_until is None or self.valid_until >= day)

    def reaches(self, purposes) -> bool:
        """A consent reaches what needs one of its purpose (or needs none); a basis reaches everything."""
        return self.basis != "consent" or purposes is None or self.purpose in purposes


@dataclass
class Tables:
    """What the database holds, as the adapters see it."""

    partners: dict[UUID, dict] = field(default_factory=dict)
    subscriptions: dict[UUID, dict] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    case_needs: dict[UUID, set[str]] = field(default_factory=dict)
    referrals: dict[UUID, dict] = field(default_factory=dict)
    responses: list[tuple] = field(default_factory=list)
    deliveries: list[dict] = field(default_factory=list)
    outbox: set[tuple[UUID, str]] = field(default_factory=set)
    unpublished: list[dict] = field(default_factory=list)
    """Forwarded rows committed to the outbox that the relay has not yet published."""
    held: list[dict] = field(default_factory=list)
    provisions: list[dict] = field(default_factory=list)
    locked: list[UUID] = field(default_factory=list)
    share_locked: list[UUID] = field(default_factory=list)
    """Partners whose rows a fan-out share-locked."""
    busy_cases: set[UUID] = field(default_factory=set)
    clock: count = field(default_factory=count)

    def add_referral(self, referral_id: UUID, partner_id: UUID, case_id: UUID, *, need: str = "housing",
                     status: str = "requested") -> None:
        self.referrals[referral_id] = {"referral_id": referral_id, "partner_id": partner_id, "case_id": case_id,
                                       "municipality_code": "142166", "need": need, "status": status,
                                       "status_before_close": None}

    def add_grant(self, case_id: UUID, partner_id: UUID, basis: str, purpose: str, **kwargs) -> Grant:
        grant = Grant(uuid7(), case_id, partner_id, basis, purpose, **kwargs)
        self.grants.append(grant)
        return grant

    def valid_grants(self, case_id: UUID, partner_id: UUID | None, day: date) -> list[Grant]:
        return [g for g in self.grants if g.case_id == case_id and partner_id in (None, g.partner_id)
                and g.valid_on(day)]


class FakeHeldEvents:
    def __init__(self, t: Tables):
        self.t = t

    async def lock_case(self, case_id):
        self.t.locked.append(case_id)

    async def try_lock_case(self, case_id):
        if case_id in self.t.busy_cases:
            return False
        self.t.locked.append(case_id)
        return True

    async def hold(self, case_id, partner_id, event_id, headers_json, value, purposes):
        if not any((h["case_id"], h["partner_id"], h["event_id"]) == (case_id, partner_id, event_id)
                   for h in self.t.held):
            self.t.held.append({"case_id": case_id, "partner_id": partner_id, "event_id": event_id,
                                "headers": headers_json, "value": value, "purposes": purposes,
                                "held_at": next(self.t.clock)})

    async def drop_for_partner(self, partner_id):
        dropped = [h for h in self.t.held if h["partner_id"] == partner_id]
        self.t.held = [h for h in self.t.held if h not in dropped]
        return len(dropped)

    async def take(self, case_id, partner_id):
        taken = [h for h in self.t.held if (h["case_id"], h["partner_id"]) == (case_id, partner_id)]
        self.t.held = [h for h in self.t.held if h not in taken]
        return sorted(taken, key=lambda h: h["held_at"])

    async def releasable(self, today, limit):
        pairs: dict[tuple, int] = {}
        for h in self.t.held:
            event_day = japan_date(datetime.fromisoformat(json.loads(h["headers"])["ce_time"]))
            if h["partner_id"] in self.t.subscriptions and any(
                    g.reaches(h["purposes"]) for g in self.t.valid_grants(h["case_id"], h["partner_id"],
                                                                          max(today, event_day))):
                key = (h["case_id"], h["partner_id"])
                pairs[key] = min(pairs.get(key, h["held_at"]), h["held_at"])
        return [{"case_id": c, "partner_id": p} for (c, p), _ in sorted(pairs.items(), key=lambda kv: kv[1])][:limit]

    async def count(self, case_id=None, partner_id=None):
        return sum(1 for h in self.t.held if case_id in (None, h["case_id"]) and partner_id in (None, h["partner_id"]))


class FakePermissions:
    def __init__(self, t: Tables):
        self.t = t

    async def remember_needs(self, case_id, person_ref, needs):
        self.t.case_needs.setdefault(case_id, set()).update(needs)

    async def add_need(self, case_id, need):
        if case_id in self.t.case_needs:
            self.t.case_needs[case_id].add(need)

    async def grant(self, grant_id, case_id, partner_id, person_ref, basis, purpose, valid_until=None):
        if all(g.grant_id != grant_id for g in self.t.grants):
            self.t.grants.append(Grant(grant_id, case_id, partner_id, basis, purpose, valid_until))

    async def revoke(self, grant_id, at):
        for g in self.t.grants:
            if g.grant_id == grant_id:
                g.revoked = True

    async def remaining(self, case_id, partner_id, on):
        valid = self.t.valid_grants(case_id, partner_id, on)
        return sorted({g.purpose for g in valid if g.basis == "consent"}), any(g.basis != "consent" for g in valid)

    async def partners_allowed(self, case_id, on):
        rows = []
        allowed = sorted(p for p in {g.partner_id for g in self.t.valid_grants(case_id, None, on)}
                         if p in self.t.partners and self.t.partners[p]["deactivated_at"] is None)
        self.t.share_locked.extend(allowed)
        for partner_id in allowed:
            if partner_id not in self.t.subscriptions:
                continue
            valid = self.t.valid_grants(case_id, partner_id, on)
            consented = sorted({g.purpose for g in valid if g.basis == "consent"}) or None
            rows.append({**self.t.partners[partner_id], **self.t.subscriptions[partner_id], "consented": consented,
                         "statutory": any(g.basis != "consent" for g in valid),
                         "case_needs": sorted(self.t.case_needs.get(case_id, ())) or None})
        return rows


class FakeDeliveries:
    def __init__(self, t: Tables):
        self.t = t

    async def queue(self, delivery_id, partner_id, event_id, event_type, case_id, body, purposes,
                    channel="webhook", referral_id=None):
        # Both unique rules of the table: one delivery per (partner, event), one mail per (partner, referral).
        if not any((d["partner_id"], d["event_id"]) == (partner_id, event_id)
                   or (channel == "email" and (d["partner_id"], d["channel"], d["referral_id"])
                       == (partner_id, channel, referral_id)) for d in self.t.deliveries):
            self.t.deliveries.append({"delivery_id": delivery_id, "partner_id": partner_id, "event_id": event_id,
                                      "event_type": event_type, "case_id": case_id, "body": body,
                                      "purposes": purposes, "status": "pending", "channel": channel,
                                      "referral_id": referral_id})

    async def published(self, event_id, topic):
        return (event_id, topic) in self.t.outbox

    async def unpublished_forwards(self, case_id, topic):
        return [r for r in self.t.unpublished if (r["topic"], r["record_key"]) == (topic, str(case_id))]

    async def drop_forwards(self, ids):
        self.t.unpublished = [r for r in self.t.unpublished if r["id"] not in ids]

    async def withdraw_unsent(self, case_id, partner_id, except_event_id, consented):
        for d in self.t.deliveries:
            still_covered = bool(set(d["purposes"]) & set(consented)) if d["purposes"] is not None else bool(consented)
            if ((d["case_id"], d["partner_id"]) == (case_id, partner_id) and d["status"] in ("pending", "sending")
                    and d["event_id"] != except_event_id and not still_covered):
                d["status"] = "withdrawn"

    async def cancel_undelivered(self, partner_id, *, including_sending):
        statuses = ("pending", "sending") if including_sending else ("pending",)
        cancelled = [d for d in self.t.deliveries if d["partner_id"] == partner_id and d["status"] in statuses]
        for d in cancelled:
            d.update(status="cancelled", last_error="partner_deactivated")
        return len(cancelled)

    async def in_flight(self, partner_id):
        return sum(1 for d in self.t.deliveries if d["partner_id"] == partner_id and d["status"] == "sending"
                   and not d.get("lease_ended"))

    async def drop_unpublished_forwards_to(self, topic):
        dropped = [r for r in self.t.unpublished if r["topic"] == topic]
        self.t.unpublished = [r for r in self.t.unpublished if r["topic"] != topic]
        return len(dropped)

    def _sending(self, delivery_id):
        return next((d for d in self.t.deliveries if d["delivery_id"] == delivery_id and d["status"] == "sending"),
                    None)

    async def delivered(self, delivery_id, status):
        if d := self._sending(delivery_id):
            d.update(status="delivered", last_status=status)

    async def retry_at(self, delivery_id, at, status, error):
        if d := self._sending(delivery_id):
            d.update(status="pending", next_attempt_at=at, last_status=status, last_error=error)

    async def dead(self, delivery_id, status, error):
        if d := self._sending(delivery_id):
            d.update(status="dead", last_status=status, last_error=error)
            return True
        return False


class FakeReferrals:
    def __init__(self, t: Tables):
        self.t = t

    async def open(self, referral_id, case_id, partner_id, municipality_code, need, at):
        self.t.referrals.setdefault(referral_id, {
            "referral_id": referral_id, "case_id": case_id, "partner_id": partner_id,
            "municipality_code": municipality_code, "need": need, "status": "requested",
            "status_before_close": None})

    async def need_of(self, referral_id):
        row = self.t.referrals.get(referral_id)
        return row["need"] if row else None

    async def close_case(self, case_id, closed, active):
        for r in self.t.referrals.values():
            if r["case_id"] == case_id and r["status"] in active:
                r.update(status=closed, status_before_close=r["status"])

    async def reopen_case(self, case_id, closed):
        for r in self.t.referrals.values():
            if r["case_id"] == case_id and r["status"] == closed:
                r.update(status=r["status_before_close"], status_before_close=None)

    async def lock_status(self, referral_id, partner_id=None):
        row = self.t.referrals.get(referral_id)
        return row["status"] if row is not None and partner_id in (None, row["partner_id"]) else None

    async def set_status(self, referral_id, status, at):
        self.t.referrals[referral_id]["status"] = status

    async def record_response(self, response_id, partner_id, referral_id, response, at):
        self.t.responses.append((response_id, partner_id, referral_id, response))


class FakeRegistry:
    def __init__(self, t: Tables):
        self.t = t

    async def add_partner(self, partner_id, name, need_categories, areas, contact_json, api_token_hash, webhook_url,
                          sealed_webhook_secret, kafka_topic, at):
        self.t.partners[partner_id] = {"partner_id": partner_id, "webhook_url": webhook_url,
                                       "kafka_topic": kafka_topic, "api_token_hash": api_token_hash,
                                       "webhook_secret": sealed_webhook_secret, "webhook_disabled": False,
                                       "previous_api_token_hash": None, "previous_webhook_secret": None,
                                       "overlap_ended": False, "deactivated_at": None}

    async def add_subscription(self, partner_id, event_types, need_categories, areas):
        self.t.subscriptions[partner_id] = {"event_types": event_types, "need_categories": need_categories,
                                            "areas": areas}

    async def set_subscription(self, partner_id, event_types, need_categories, areas):
        if partner_id not in self.t.subscriptions:
            return False
        await self.add_subscription(partner_id, event_types, need_categories, areas)
        return True

    async def partner_of_token_hash(self, api_token_hash):
        """`overlap_ended` stands for the clock passing the previous credentials' overlap."""
        return next((p for p, row in self.t.partners.items() if row["deactivated_at"] is None and (
            row["api_token_hash"] == api_token_hash
            or (not row["overlap_ended"] and row["previous_api_token_hash"] == api_token_hash))), None)

    async def receiving(self, partner_id):
        row = self.t.partners.get(partner_id)
        return ({k: row[k] for k in ("partner_id", "webhook_url", "kafka_topic")}
                if row and row["deactivated_at"] is None else None)

    async def lock_receiving(self, partner_ids):
        self.t.share_locked.extend(partner_ids)
        return {p for p in partner_ids if p in self.t.partners and self.t.partners[p]["deactivated_at"] is None}

    async def state(self, partner_id):
        row = self.t.partners.get(partner_id)
        return None if row is None else {"webhook_url": row["webhook_url"], "kafka_topic": row["kafka_topic"],
                                         "has_secret": row["webhook_secret"] is not None,
                                         "deactivated_at": row["deactivated_at"]}

    def _active(self, partner_id):
        row = self.t.partners.get(partner_id)
        return row if row is not None and row["deactivated_at"] is None else None

    async def rotate_api_token(self, partner_id, new_hash, overlap_s):
        if row := self._active(partner_id):
            row.update(previous_api_token_hash=row["api_token_hash"], api_token_hash=new_hash, overlap_ended=False)
            return datetime.now(UTC) + timedelta(seconds=overlap_s)
        return None

    async def rotate_webhook_secret(self, partner_id, sealed, overlap_s):
        if (row := self._active(partner_id)) and row["webhook_secret"] is not None:
            row.update(previous_webhook_secret=row["webhook_secret"], webhook_secret=sealed, overlap_ended=False)
            return datetime.now(UTC) + timedelta(seconds=overlap_s)
        return None

    async def set_webhook(self, partner_id, url, sealed_secret_if_none):
        if not (row := self._active(partner_id)):
            return None
        took = row["webhook_secret"] is None
        row.update(webhook_url=url, webhook_disabled=False,
                   webhook_secret=row["webhook_secret"] if not took else sealed_secret_if_none)
        return took

    async def deactivate(self, partner_id):
        row = self.t.partners.get(partner_id)
        if row is None:
            return None
        row["deactivated_at"] = row["deactivated_at"] or datetime.now(UTC)
        return {"kafka_topic": row["kafka_topic"], "deactivated_at": row["deactivated_at"]}

    async def enable_webhook(self, partner_id):
        self.t.partners[partner_id]["webhook_disabled"] = False

    async def disable_webhook(self, partner_id):
        self.t.partners[partner_id]["webhook_disabled"] = True


class FakeAccess:
    def __init__(self, t: Tables):
        self.t = t

    async def referral(self, partner_id, referral_id):
        row = self.t.referrals.get(referral_id)
        return row if row is not None and row["partner_id"] == partner_id else None

    async def grant(self, case_id, partner_id, today, purposes, preferred_purpose):
        fitting = [g for g in self.t.valid_grants(case_id, partner_id, today) if g.reaches(purposes)]
        fitting.sort(key=lambda g: (g.basis != "consent", g.purpose == preferred_purpose))
        return {"basis": fitting[0].basis, "purpose": fitting[0].purpose} if fitting else None

    async def other_purposes(self, case_id, partner_id, today):
        return sorted({g.purpose for g in self.t.valid_grants(case_id, partner_id, today)}) or None


class FakeProvisions:
    def __init__(self, t: Tables):
        self.t = t

    async def record(self, provision_id, partner_id, person_ref, case_id, referral_id, items, basis, purpose, at):
        self.t.provisions.append({"partner_id": partner_id, "person_ref": person_ref, "referral_id": referral_id,
                                  "items": items, "basis": basis, "purpose": purpose})


class FakeRepository:
    """adapters.repository.Repository in memory: the same adapters, over one set of tables."""

    def __init__(self, tables: Tables | None = None):
        self.tables = t = tables or Tables()
        self.held, self.permissions, self.deliveries = FakeHeldEvents(t), FakePermissions(t), FakeDeliveries(t)
        self.referrals, self.registry, self.access = FakeReferrals(t), FakeRegistry(t), FakeAccess(t)
        self.provisions = FakeProvisions(t)


@pytest.fixture
def repo() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def uow(repo) -> FakeUnitOfWork:
    return FakeUnitOfWork(repo)


@pytest.fixture
def new_uow(repo):
    """Gives a new fake unit of work over the same tables at each call (the sweep's, a detail fetch's);
    `new_uow.done` lists those whose block ended without an error, as committed."""
    done: list[FakeUnitOfWork] = []

    @asynccontextmanager
    async def new() -> AsyncIterator[FakeUnitOfWork]:
        unit = FakeUnitOfWork(repo)
        yield unit
        done.append(unit)

    new.done = done
    return new
