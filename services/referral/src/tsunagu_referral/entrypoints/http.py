"""The referral HTTP API: the case's referrals, the coordinator's queue, staff actions, routing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import CaseClosureReason, ContactMethod, DeclineReason, NeedCategory, ReferralOutcome
from tsunagu_referral.domain.deadlines import JST
from tsunagu_referral.domain.referral import Action, Status
from tsunagu_referral.handlers.referrals import Detail, Policy, act, add_referral, close_case
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Role, require
from tsunagu_servicehost.errors import Refused

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


def view(row: asyncpg.Record) -> dict:
    status = Status(row["status"])
    return {
        "referral_id": str(row["referral_id"]), "case_id": str(row["case_id"]), "need": row["need"],
        "need_label_ja": NeedCategory(row["need"]).label_ja, "recipient": json.loads(row["recipient"]),
        "candidate_rank": row["candidate_rank"], "status": status.value, "status_label_ja": status.label_ja,
        "urgency": row["urgency"], "accept_by": row["accept_by"].astimezone(JST).isoformat(),
        "overdue": row["overdue_at"] is not None, "decline_reason": row["decline_reason"],
        "contact_method": row["contact_method"], "outcome": row["outcome"],
        "requested_at": row["requested_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def build_router(runtime: Runtime, policy: Policy) -> list[APIRouter]:
    router = APIRouter(prefix="/v1", tags=["referral つなぐシート"])

    def now() -> datetime:
        return datetime.now(UTC)

    async def run_action(referral_id: UUID, action: Action, detail: Detail) -> dict:
        async with runtime.db.acquire() as conn, conn.transaction():
            return view(await act(conn, referral_id, action, detail, now=now(), policy=policy))

    @router.get("/cases/{case_id}/referrals", summary="相談の紹介一覧 (a case's sheet and referrals)",
                dependencies=[Depends(READERS)])
    async def case_referrals(case_id: UUID) -> dict:
        async with runtime.db.acquire() as conn:
            sheet = await conn.fetchrow("SELECT * FROM sheets WHERE case_id = $1", case_id)
            if sheet is None:
                raise Refused.not_found("つなぐシート", "referral sheet")
            rows = await conn.fetch("SELECT * FROM referrals WHERE case_id = $1 ORDER BY requested_at", case_id)
        return {"case_id": str(case_id), "sheet_id": str(sheet["sheet_id"]), "needs": sheet["needs"],
                "primary_need": sheet["primary_need"], "urgency": sheet["urgency"],
                "closed_at": sheet["closed_at"].isoformat() if sheet["closed_at"] else None,
                "last_contact_at": sheet["last_contact_at"].isoformat() if sheet["last_contact_at"] else None,
                "referrals": [view(r) for r in rows]}

    @router.get("/referrals",
                summary="紹介の一覧（通知不達、次に期限超過が先頭） (referrals, unreachable then overdue first)",
                dependencies=[Depends(require(Role.COORDINATOR, Role.OPS))])
    async def referrals(status: Annotated[Status | None, Query()] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        async with runtime.db.acquire() as conn:
            # The same order as the referrals_queue index (0003).
            rows = await conn.fetch(
                "SELECT * FROM referrals WHERE ($1::text IS NULL OR status = $1) "
                "ORDER BY (status = 'unreachable') DESC, (overdue_at IS NOT NULL) DESC, accept_by, requested_at "
                "LIMIT $2",
                status.value if status else None, limit)
        return [view(r) for r in rows]

    @router.post("/referrals/{referral_id}/acceptance", summary="受理する (accept)", dependencies=[Depends(STAFF)])
    async def accept(referral_id: UUID) -> dict:
        return await run_action(referral_id, Action.ACCEPT, Detail())

    @router.post("/referrals/{referral_id}/decline", summary="辞退する (decline; the next candidate is asked)",
                 dependencies=[Depends(STAFF)])
    async def decline(referral_id: UUID, body: Decline) -> dict:
        return await run_action(referral_id, Action.DECLINE, Detail(reason=body.reason))

    @router.post("/referrals/{referral_id}/contacts", summary="本人との接触を記録する (record contact)",
                 dependencies=[Depends(STAFF)])
    async def contact(referral_id: UUID, body: Contact) -> dict:
        return await run_action(referral_id, Action.CONTACT, Detail(method=body.method))

    @router.post("/referrals/{referral_id}/completion", summary="終了する (complete with an outcome)",
                 dependencies=[Depends(STAFF)])
    async def complete(referral_id: UUID, body: Complete) -> dict:
        return await run_action(referral_id, Action.COMPLETE, Detail(outcome=body.outcome))

    @router.post("/referrals/{referral_id}/reroute", summary="つなぎ直す (reroute to another recipient)",
                 dependencies=[Depends(COORDINATOR)])
    async def reroute(referral_id: UUID, body: Reroute) -> dict:
        return await run_action(referral_id, Action.REROUTE, Detail(recipient=body.recipient))

    @router.post("/cases/{case_id}/referrals", status_code=201, summary="紹介を追加する (add a referral)",
                 dependencies=[Depends(COORDINATOR)])
    async def add(case_id: UUID, body: AddReferral) -> dict:
        async with runtime.db.acquire() as conn, conn.transaction():
            referral_id = await add_referral(conn, case_id, body.need, body.recipient, now=now(), policy=policy)
            return view(await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id))

    @router.post("/cases/{case_id}/closure", status_code=204, summary="相談を終了する (close the case)",
                 dependencies=[Depends(COORDINATOR)])
    async def close(case_id: UUID, body: CloseCase) -> None:
        async with runtime.db.acquire() as conn, conn.transaction():
            await close_case(conn, case_id, body.reason, now=now())

    @router.get("/routing", summary="紹介先の振り分け表 (the routing table)", dependencies=[Depends(READERS)])
    async def routing() -> dict:
        async with runtime.db.acquire() as conn:
            rows = await conn.fetch("SELECT need, rank, recipient FROM routes ORDER BY need, rank")
        table: dict[str, list] = {}
        for r in rows:
            table.setdefault(r["need"], []).append(json.loads(r["recipient"]))
        return table

    @router.put("/routing/{need}", summary="振り分け表を変更する (set a need's candidates)",
                dependencies=[Depends(COORDINATOR)])
    async def set_routing(need: NeedCategory, body: Routes) -> dict:
        async with runtime.db.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM routes WHERE need = $1", need.value)
            await conn.executemany("INSERT INTO routes (need, rank, recipient) VALUES ($1, $2, $3::jsonb)",
                                   [(need.value, rank, r.model_dump_json(exclude_none=True))
                                    for rank, r in enumerate(body.candidates, start=1)])
        return {"need": need.value, "candidates": [r.model_dump(mode="json", exclude_none=True)
                                                   for r in body.candidates]}

    return [router]
