"""The referral HTTP API: the case's referrals, the coordinator's queue, staff actions, routing."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import (
    CaseClosureReason, ContactMethod, DeclineReason, Division, FollowUpOutcome, NeedCategory, ReferralOutcome,
)
from tsunagu_referral.adapters.repository import Repository, unit_of_work
from tsunagu_referral.domain.deadlines import JST
from tsunagu_referral.domain.model import Detail, FollowUp, Policy, Referral
from tsunagu_referral.domain.referral import Action, Status
from tsunagu_referral.handlers.follow_ups import answer_follow_up
from tsunagu_referral.handlers.referrals import act, add_referral, close_case
from tsunagu_referral.handlers.reports import project_appended
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Principal, Role, require
from tsunagu_servicehost.errors import CONFLICT, Refused

STAFF = require(Role.COUNTER, Role.COORDINATOR)
COORDINATOR = require(Role.COORDINATOR)
READERS = require(Role.COUNTER, Role.COORDINATOR, Role.COUNCIL, Role.OPS)
DIVISION = {"kind": "division", "division": "housing"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Decline(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "capacity_full"}]})
    reason: DeclineReason


class Contact(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"method": "home_visit"}]})
    method: ContactMethod


class Complete(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"outcome": "supported"}]})
    outcome: ReferralOutcome


class Reroute(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"recipient": DIVISION}]})
    recipient: Recipient


class AddReferral(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"need": "housing", "recipient": DIVISION}]})
    need: NeedCategory
    recipient: Recipient | None = Field(default=None, description="Omit to take the routing table's next candidate.")


class CloseCase(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "stable_with_support"}]})
    reason: CaseClosureReason


class Routes(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"candidates": [
        DIVISION, {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"}]}]})
    candidates: list[Recipient] = Field(min_length=1, max_length=20)


class AnswerFollowUp(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"outcome": "reached_not_helped"}]})
    outcome: FollowUpOutcome = Field(description="本人の回答 (what the person said: did the help arrive?)")


FOLLOW_UP_STATES = {"scheduled": "予定", "due": "確認待ち", "overdue": "確認期限超過", "answered": "回答済み"}


def follow_up_view(follow_up: FollowUp, now: datetime) -> dict:
    state = follow_up.state(now)
    return {
        "follow_up_id": str(follow_up.follow_up_id), "case_id": str(follow_up.case_id),
        "referral_id": str(follow_up.referral_id), "need": follow_up.need.value,
        "need_label_ja": follow_up.need.label_ja, "counter": follow_up.counter.value,
        "counter_label_ja": follow_up.counter.label_ja, "state": state, "state_label_ja": FOLLOW_UP_STATES[state],
        "due_on": follow_up.due_on.isoformat(), "answer_by": follow_up.answer_by.astimezone(JST).isoformat(),
        "outcome": follow_up.outcome and follow_up.outcome.value,
        "outcome_label_ja": follow_up.outcome and follow_up.outcome.label_ja,
        "answered_at": follow_up.answered_at and follow_up.answered_at.isoformat(),
        "reopened_referral_id": follow_up.reopened_referral_id and str(follow_up.reopened_referral_id),
    }


def view(referral: Referral) -> dict:
    return {
        "referral_id": str(referral.referral_id), "case_id": str(referral.case_id), "need": referral.need.value,
        "need_label_ja": referral.need.label_ja,
        "recipient": referral.recipient.model_dump(mode="json", exclude_none=True),
        "candidate_rank": referral.candidate_rank, "status": referral.status.value,
        "status_label_ja": referral.status.label_ja, "urgency": referral.urgency.value,
        "accept_by": referral.accept_by.astimezone(JST).isoformat(), "overdue": referral.overdue_at is not None,
        "decline_reason": referral.decline_reason, "contact_method": referral.contact_method,
        "outcome": referral.outcome, "requested_at": referral.requested_at.isoformat(),
        "updated_at": referral.updated_at.isoformat(),
    }


def build_router(runtime: Runtime, policy: Policy) -> list[APIRouter]:
    router = APIRouter(prefix="/v1", tags=["referral つなぐシート"])

    def now() -> datetime:
        return datetime.now(UTC)

    def work():
        """One transaction; a domain refusal (Rejected) rolls it back and is answered with its status."""
        return unit_of_work(runtime.db, on_append=project_appended)

    @asynccontextmanager
    async def reading():
        async with runtime.db.acquire() as conn:
            yield Repository(conn)

    async def run_action(referral_id: UUID, action: Action, detail: Detail) -> dict:
        async with work() as uow:
            return view(await act(uow, referral_id, action, detail, now=now(), policy=policy))

    @router.get("/cases/{case_id}/referrals", summary="相談の紹介一覧 (a case's sheet and referrals)",
                dependencies=[Depends(READERS)])
    async def case_referrals(case_id: UUID) -> dict:
        async with reading() as repo:
            sheet = await repo.sheet(case_id)
            if sheet is None:
                raise Refused.not_found("つなぐシート", "referral sheet")
            referrals = await repo.referrals_of_case(case_id)
        return {"case_id": str(case_id), "sheet_id": str(sheet.sheet_id), "needs": sheet.needs,
                "primary_need": sheet.primary_need.value, "urgency": sheet.urgency.value,
                "closed_at": sheet.closed_at.isoformat() if sheet.closed_at else None,
                "last_contact_at": sheet.last_contact_at.isoformat() if sheet.last_contact_at else None,
                "referrals": [view(r) for r in referrals]}

    @router.get("/referrals",
                summary="紹介の一覧（通知不達、次に期限超過が先頭） (referrals, unreachable then overdue first)",
                dependencies=[Depends(require(Role.COORDINATOR, Role.OPS))])
    async def referrals(status: Annotated[Status | None, Query()] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        async with reading() as repo:
            return [view(r) for r in await repo.queue(status, limit)]

    @router.post("/referrals/{referral_id}/acceptance", responses=CONFLICT, summary="受理する (accept)", dependencies=[Depends(STAFF)])
    async def accept(referral_id: UUID) -> dict:
        return await run_action(referral_id, Action.ACCEPT, Detail())

    @router.post("/referrals/{referral_id}/decline", responses=CONFLICT, summary="辞退する (decline; the next candidate is asked)",
                 dependencies=[Depends(STAFF)])
    async def decline(referral_id: UUID, body: Decline) -> dict:
        return await run_action(referral_id, Action.DECLINE, Detail(reason=body.reason))

    @router.post("/referrals/{referral_id}/contacts", responses=CONFLICT, summary="本人との接触を記録する (record contact)",
                 dependencies=[Depends(STAFF)])
    async def contact(referral_id: UUID, body: Contact) -> dict:
        return await run_action(referral_id, Action.CONTACT, Detail(method=body.method))

    @router.post("/referrals/{referral_id}/completion", responses=CONFLICT, summary="終了する (complete with an outcome)",
                 dependencies=[Depends(STAFF)])
    async def complete(referral_id: UUID, body: Complete) -> dict:
        return await run_action(referral_id, Action.COMPLETE, Detail(outcome=body.outcome))

    @router.post("/referrals/{referral_id}/reroute", responses=CONFLICT, summary="つなぎ直す (reroute to another recipient)",
                 dependencies=[Depends(COORDINATOR)])
    async def reroute(referral_id: UUID, body: Reroute) -> dict:
        return await run_action(referral_id, Action.REROUTE, Detail(recipient=body.recipient))

    @router.post("/cases/{case_id}/referrals", responses=CONFLICT, status_code=201, summary="紹介を追加する (add a referral)",
                 dependencies=[Depends(COORDINATOR)])
    async def add(case_id: UUID, body: AddReferral) -> dict:
        async with work() as uow:
            return view(await add_referral(uow, case_id, body.need, body.recipient, now=now(), policy=policy))

    @router.post("/cases/{case_id}/closure", responses=CONFLICT, status_code=204, summary="相談を終了する (close the case)",
                 dependencies=[Depends(COORDINATOR)])
    async def close(case_id: UUID, body: CloseCase) -> None:
        async with work() as uow:
            await close_case(uow, case_id, body.reason, now=now())

    @router.get("/follow-ups",
                summary="フォローアップの一覧（確認期限超過が先頭） (follow-ups waiting for the person's answer, "
                        "overdue first)",
                dependencies=[Depends(READERS)])
    async def follow_ups(state: Annotated[Literal["due", "overdue"] | None, Query()] = None,
                         counter: Annotated[Division | None, Query(description="One counter's follow-ups")] = None,
                         case_id: Annotated[UUID | None, Query(description="One case's follow-ups")] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        at = now()
        async with reading() as repo:
            return [follow_up_view(f, at) for f in await repo.follow_ups(state, counter, at, limit, case_id=case_id)]

    @router.post("/follow-ups/{follow_up_id}/answer", responses=CONFLICT,
                 summary="フォローアップの回答を記録する (record whether the help arrived; "
                         "not helped reopens the need for the coordinator)")
    async def answer(follow_up_id: UUID, body: AnswerFollowUp,
                     who: Annotated[Principal, Depends(STAFF)]) -> dict:
        at = now()
        async with work() as uow:
            follow_up = await answer_follow_up(uow, follow_up_id, body.outcome, staff=who.subject, now=at,
                                               policy=policy)
        return follow_up_view(follow_up, at)

    @router.get("/routing", summary="紹介先の振り分け表 (the routing table)", dependencies=[Depends(READERS)])
    async def routing() -> dict:
        async with reading() as repo:
            table = await repo.routing_table()
        return {need.value: [r.model_dump(mode="json", exclude_none=True) for r in candidates]
                for need, candidates in table.items()}

    @router.put("/routing/{need}", summary="振り分け表を変更する (set a need's candidates)",
                dependencies=[Depends(COORDINATOR)])
    async def set_routing(need: NeedCategory, body: Routes) -> dict:
        async with work() as uow:
            await uow.repo.set_routes(need, body.candidates)
        return {"need": need.value, "candidates": [r.model_dump(mode="json", exclude_none=True)
                                                   for r in body.candidates]}

    return [router]
