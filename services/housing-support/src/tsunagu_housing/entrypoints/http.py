"""The housing council's HTTP API: members, supports and their stages, tasks, check-ins, overview.

The council acts on every support; coordinators and operations read; a partner member (its own
token) reads and acts only on the supports it leads or has a task on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response

from tsunagu_contracts.codes import TenancyStage
from tsunagu_contracts.dates import CalendarDate
from tsunagu_contracts.japan import JST, japan_date
from tsunagu_housing.adapters import views
from tsunagu_housing.adapters.repository import Repository, UnitOfWork, unit_of_work
from tsunagu_housing.adapters.sealing import Sealer
from tsunagu_housing.domain.commands import (
    AssignTask, CheckInSchedule, MoveStage, OpenSupport, RecordCheckIn, RegisterMember, SetLead,
)
from tsunagu_housing.domain.model import Actor
from tsunagu_housing.handlers import check_ins, members, supports
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Principal, Role, require
from tsunagu_servicehost.errors import CONFLICT, NOT_FOUND, Refused

COUNCIL = require(Role.COUNCIL)
ACTORS = require(Role.COUNCIL, Role.PARTNER)
READERS = require(Role.COUNCIL, Role.COORDINATOR, Role.OPS, Role.PARTNER)
T = TypeVar("T")


def actor(who: Principal) -> Actor:
    if who.role is Role.PARTNER and who.partner_id is None:
        raise Refused(403, "連携団体のトークンに団体IDがありません。", "a partner token must name its partner")
    return Actor(who.subject, who.role.value, who.partner_id if who.role is Role.PARTNER else None)


def build_router(runtime: Runtime, *, sealer: Callable[[], Sealer], default_every_days: int) -> list[APIRouter]:
    router = APIRouter(prefix="/v1", tags=["housing support 居住支援"])

    def now() -> datetime:
        return datetime.now(UTC)

    async def write(do: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """One transaction; a rejection rolls it back and is answered with its status (servicehost errors)."""
        async with unit_of_work(runtime.db) as uow:
            return await do(uow)

    async def read(do):
        async with runtime.db.acquire() as conn:
            return await do(conn)

    async def detail(support_id: UUID, who: Principal) -> dict:
        partner_id = actor(who).partner_id
        async with runtime.db.acquire() as conn:
            hidden = partner_id is not None and not await Repository(conn).partner_is_involved(support_id, partner_id)
            found = None if hidden else await views.support(conn, support_id, sealer=sealer(), now=now())
        if found is None:
            raise Refused.not_found("居住支援", "housing support")
        return found

    # members ----------------------------------------------------------------------------------

    @router.post("/members", responses=CONFLICT, status_code=201, summary="協議会の構成員を登録する (register a council member)")
    async def register_member(body: RegisterMember, who: Principal = Depends(COUNCIL)) -> dict:
        member = await write(lambda uow: members.register_member(uow, body, now=now()))
        return {"member_id": str(member.member_id), "name": member.name,
                **member.recipient.model_dump(mode="json", exclude_none=True),
                "takes_on": sorted(r.value for r in member.takes_on)}

    @router.get("/members", summary="協議会の構成員 (council members)", dependencies=[Depends(READERS)])
    async def list_members() -> list[dict]:
        return await read(views.members)

    # supports ---------------------------------------------------------------------------------

    @router.post("/supports", status_code=201, responses=NOT_FOUND | CONFLICT, summary="居住支援を開始する (open a support for a known case)")
    async def open_support(body: OpenSupport, who: Principal = Depends(COUNCIL)) -> dict:
        support = await write(lambda uow: supports.open_by_hand(uow, body, by=actor(who), now=now()))
        return await detail(support.support_id, who)

    @router.get("/supports", summary="居住支援の一覧 (supports, by stage and member)")
    async def list_supports(stage: Annotated[TenancyStage | None, Query()] = None,
                            member: Annotated[UUID | None, Query()] = None,
                            page: Annotated[int, Query(ge=1, le=10_000)] = 1,
                            who: Principal = Depends(READERS)) -> dict:
        return await read(lambda conn: views.supports(conn, stage=stage, member=member, partner_id=actor(who).partner_id,
                                                      page=page, now=now()))

    @router.get("/supports/{support_id}", summary="居住支援の経過 (a support's whole history)")
    async def get_support(support_id: UUID, who: Principal = Depends(READERS)) -> dict:
        return await detail(support_id, who)

    @router.post("/supports/{support_id}/stage", responses=CONFLICT, summary="段階を進める (move to another stage)")
    async def move_stage(support_id: UUID, body: MoveStage, who: Principal = Depends(ACTORS)) -> dict:
        await write(lambda uow: supports.move_stage(uow, support_id, body, by=actor(who), now=now(),
                                                    sealer=sealer(), default_every_days=default_every_days))
        return await detail(support_id, who)

    @router.put("/supports/{support_id}/lead", responses=CONFLICT, summary="主担当を変える (change the lead member)")
    async def set_lead(support_id: UUID, body: SetLead, who: Principal = Depends(COUNCIL)) -> dict:
        await write(lambda uow: supports.set_lead(uow, support_id, body.member_id, by=actor(who)))
        return await detail(support_id, who)

    @router.post("/supports/{support_id}/tasks", responses=CONFLICT, status_code=201, summary="タスクを割り当てる (assign a task)")
    async def assign_task(support_id: UUID, body: AssignTask, who: Principal = Depends(COUNCIL)) -> dict:
        task_id = await write(lambda uow: supports.assign_task(uow, support_id, body, by=actor(who), now=now()))
        return {"task_id": str(task_id)}

    @router.post("/supports/{support_id}/tasks/{task_id}/done", responses=CONFLICT, status_code=204,
                 summary="タスクを完了にする (mark a task done)")
    async def complete_task(support_id: UUID, task_id: UUID, who: Principal = Depends(ACTORS)) -> Response:
        await write(lambda uow: supports.complete_task(uow, support_id, task_id, by=actor(who), now=now()))
        return Response(status_code=204)

    # check-ins --------------------------------------------------------------------------------

    @router.put("/supports/{support_id}/check-in-schedule", responses=CONFLICT, summary="見守りの予定を設定する (set the check-in schedule)")
    async def set_schedule(support_id: UUID, body: CheckInSchedule, who: Principal = Depends(COUNCIL)) -> dict:
        await write(lambda uow: check_ins.set_schedule(uow, support_id, body, by=actor(who), now=now(),
                                                       default_every_days=default_every_days))
        return {"check_in_schedule": (await detail(support_id, who))["check_in_schedule"]}

    @router.post("/supports/{support_id}/check-ins", responses=CONFLICT, status_code=201, summary="見守りを記録する (record a check-in)")
    async def record_check_in(
        support_id: UUID, body: RecordCheckIn, who: Principal = Depends(ACTORS),
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=200,
            description="Sent again with the same request (a double tap), the first answer is given and "
                        "nothing more is recorded")] = None,
    ) -> dict:
        check_in_id = await write(lambda uow: check_ins.record_check_in(uow, support_id, body, by=actor(who),
                                                                        now=now(), idempotency_key=idempotency_key))
        return {"check_in_id": str(check_in_id)}

    @router.get("/check-ins", summary="今日の見守り・未実施の見守り (check-ins due today, or missed)")
    async def list_check_ins(due: Annotated[Literal["today"] | None, Query()] = None,
                             missed: Annotated[bool, Query()] = False,
                             member: Annotated[UUID | None, Query()] = None,
                             who: Principal = Depends(READERS)) -> dict:
        if (due is None) == (not missed):
            raise Refused.invalid("due", "due=today か missed=true のどちらかを指定してください。",
                                  "give either due=today or missed=true")
        partner_id = actor(who).partner_id
        if missed:
            items = await read(lambda conn: views.check_ins_to_follow_up(conn, member=member, partner_id=partner_id))
        else:
            end_of_today = datetime.combine(japan_date(now()) + timedelta(days=1), datetime.min.time(), JST)
            items = await read(lambda conn: views.check_ins_due(conn, until=end_of_today, member=member,
                                                                partner_id=partner_id))
        return {"items": items}

    @router.get("/overview", summary="協議会への報告 (the council's figures)",
                dependencies=[Depends(require(Role.COUNCIL, Role.COORDINATOR, Role.OPS))])
    async def overview(month: Annotated[CalendarDate | None, Query(description="Any day of the month; default this month.")]
                       = None) -> dict:
        return await read(lambda conn: views.overview(conn, month=month or japan_date(now())))

    return [router]
