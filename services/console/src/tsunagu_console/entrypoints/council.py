"""Pages of the housing council (居住支援協議会): supports by stage, one support's history and the
forms that move it on, today's and missed check-ins (recorded in two taps), the figures for the
council's meeting, and its members.

Everything comes from housing-support's API with the signed-in council member's own token. A form
the service refuses is shown again with the service's own message beside it, and nothing changes.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import Session
from tsunagu_console.domain import labels
from tsunagu_console.entrypoints.pages import apis, form, pages, redirect, signed_in
from tsunagu_contracts.japan import JST

COUNCIL = signed_in("council")
HOUSING = "housing"
MONTH = re.compile(r"^([1-9]\d{3})-(0[1-9]|1[0-2])$")
FREQUENCIES = {"DAILY": "毎日", "WEEKLY": "毎週", "MONTHLY": "毎月"}
QUICK_RESULTS = {
    "visit": (("well", "会えた（問題なし）"), ("not_at_home", "不在だった")),
    "safety_contact": (("well", "無事を確認できた（問題なし）"), ("not_at_home", "連絡がつかなかった")),
}
"""The likely results of a check-in by its kind, one button each on the check-ins page; anything
else is recorded with the fuller form on the support's page."""


class Invalid(Exception):
    """A field the console itself can tell is wrong, before asking the service."""

    def __init__(self, field: str, message_ja: str, message_en: str):
        super().__init__(message_en)
        self.refusal = ApiRefused(422, message_ja, message_en, [{"field": field, "message_ja": message_ja,
                                                                 "message_en": message_en}])


def text(data: FormData, name: str) -> str:
    return str(data.get(name, "")).strip()


def request_key(data: FormData) -> str | None:
    """The form's Idempotency-Key (a hidden field made when the page was rendered); none when it is
    missing or not of the shape the console makes, and the request is then sent without one."""
    key = text(data, "request_key")
    return key if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", key) else None


def uuid_field(data: FormData, name: str, label_ja: str) -> str:
    """A UUID from a form; it goes into an API path, so nothing else ever does."""
    try:
        return str(UUID(text(data, name)))
    except ValueError:
        raise Invalid(name, f"{label_ja}が正しくありません。", f"{name} is not an id") from None


def japan_moment(value: str, name: str, label_ja: str) -> str | None:
    """A `datetime-local` field (Japan time) as an ISO moment; None when empty."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(name, f"{label_ja}の日時が正しくありません。", f"{name} is not a date and time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=JST)).isoformat()


def era_month(day: date) -> str:
    """`令和8年11月` for a month."""
    return labels.wareki(day).split("月")[0] + "月"


def schedule_rules(data: FormData) -> list[dict]:
    """The check-in schedule form: for each kind, a frequency, an interval, a first time and a grace."""
    rules = []
    for kind, kind_label in labels.options("CheckInKind"):
        frequency = text(data, f"{kind}_freq")
        if not frequency:
            continue
        if frequency not in FREQUENCIES:
            raise Invalid(f"{kind}_freq", f"{kind_label}の頻度を選んでください。", "choose a frequency")
        start = japan_moment(text(data, f"{kind}_start"), f"{kind}_start", f"{kind_label}の初回")
        if start is None:
            raise Invalid(f"{kind}_start", f"{kind_label}の初回の日時を入力してください。", "give the first time")
        try:
            interval = int(text(data, f"{kind}_interval") or "1")
            grace = int(text(data, f"{kind}_grace") or "0")
        except ValueError:
            raise Invalid(f"{kind}_interval", f"{kind_label}の間隔と猶予は数字で入力してください。",
                          "interval and grace are numbers") from None
        if not 1 <= interval <= 365:
            raise Invalid(f"{kind}_interval", f"{kind_label}の間隔は1から365の間で入力してください。",
                          "interval is 1 to 365")
        first = datetime.fromisoformat(start).astimezone(JST)
        rules.append({"kind": kind, "grace_minutes": grace, "rrule": (
            f"DTSTART;TZID=Asia/Tokyo:{first:%Y%m%dT%H%M%S}\nRRULE:FREQ={frequency};INTERVAL={interval}")})
    if not rules:
        raise Invalid("safety_contact_freq", "見守りの頻度を少なくとも一つ選んでください。", "choose at least one rule")
    return rules


def build_router() -> APIRouter:
    router = APIRouter(prefix="/council")

    async def members_of(request: Request, session: Session) -> list[dict]:
        return await apis(request).get(HOUSING, "/v1/members", session.token)

    # supports -----------------------------------------------------------------------------------

    @router.get("/supports")
    async def supports(request: Request, stage: str = "", member: str = "", page: int = 1,
                       session: Session = Depends(COUNCIL)) -> Response:
        members = await members_of(request, session)
        stage = stage if stage in dict(labels.options("TenancyStage")) else ""
        member = member if member in {m["member_id"] for m in members} else ""
        listed = await apis(request).get(HOUSING, "/v1/supports", session.token, stage=stage, member=member,
                                         page=max(1, min(page, 10_000)))
        groups = [(code, text_ja, [s for s in listed["items"] if s["stage"] == code])
                  for code, text_ja in labels.options("TenancyStage") if not stage or code == stage]
        return pages(request).render(request, "council/supports.html", session, groups=groups, members=members,
                                     stage=stage, member=member, page=listed["page"], next_page=listed["next_page"])

    async def support_page(request: Request, session: Session, support_id: UUID, *,
                           error: ApiRefused | None = None, failed: str = "") -> Response:
        support = await apis(request).get(HOUSING, f"/v1/supports/{support_id}", session.token)
        members = await members_of(request, session)
        return pages(request).render(
            request, "council/support.html", session, status_code=error.status if error else 200, support=support,
            members=members, names={m["member_id"]: m["name"] for m in members}, error=error, failed=failed,
            frequencies=FREQUENCIES, now_local=datetime.now(JST).strftime("%Y-%m-%dT%H:%M"))

    @router.get("/supports/{support_id}")
    async def support(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        return await support_page(request, session, support_id)

    async def act(request: Request, session: Session, support_id: UUID, failed: str, do, flash: str) -> Response:
        """Run one form of the support page: back to the page with a message, or the form again with the
        refusal beside it."""
        data = await form(request, session)
        try:
            await do(data)
        except Invalid as invalid:
            return await support_page(request, session, support_id, error=invalid.refusal, failed=failed)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await support_page(request, session, support_id, error=refused, failed=failed)
        return redirect(f"/council/supports/{support_id}", flash)

    @router.post("/supports/{support_id}/stage")
    async def move_stage(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            to_stage = text(data, "to_stage")
            body: dict[str, Any] = {"to_stage": to_stage}
            if reason := text(data, "reason"):
                body["reason"] = reason
            if to_stage == "ended":
                body |= {k: v for k in ("end_reason", "ended_on") if (v := text(data, k))}
            if to_stage == "move_in":
                body["tenancy"] = {k: text(data, k) for k in ("landlord", "address", "moved_in_on")}
            await apis(request).post(HOUSING, f"/v1/supports/{support_id}/stage", session.token, body)
        return await act(request, session, support_id, "stage", do, "段階を変更しました。")

    @router.post("/supports/{support_id}/lead")
    async def set_lead(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            await apis(request).put(HOUSING, f"/v1/supports/{support_id}/lead", session.token,
                                    {"member_id": uuid_field(data, "member_id", "主担当")})
        return await act(request, session, support_id, "lead", do, "主担当を変更しました。")

    @router.post("/supports/{support_id}/tasks")
    async def assign_task(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            body = {"member_id": uuid_field(data, "member_id", "担当する構成員"), "kind": text(data, "kind")}
            if due_on := text(data, "due_on"):
                body["due_on"] = due_on
            await apis(request).post(HOUSING, f"/v1/supports/{support_id}/tasks", session.token, body)
        return await act(request, session, support_id, "task", do, "タスクを割り当てました。")

    @router.post("/supports/{support_id}/tasks/{task_id}/done")
    async def complete_task(request: Request, support_id: UUID, task_id: UUID,
                            session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            await apis(request).post(HOUSING, f"/v1/supports/{support_id}/tasks/{task_id}/done", session.token)
        return await act(request, session, support_id, "task", do, "タスクを完了にしました。")

    @router.post("/supports/{support_id}/schedule")
    async def set_schedule(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            await apis(request).put(HOUSING, f"/v1/supports/{support_id}/check-in-schedule", session.token,
                                    {"rules": schedule_rules(data)})
        return await act(request, session, support_id, "schedule", do, "見守りの予定を設定しました。")

    @router.post("/supports/{support_id}/check-ins")
    async def record_check_in(request: Request, support_id: UUID, session: Session = Depends(COUNCIL)) -> Response:
        async def do(data: FormData) -> None:
            body = {"kind": text(data, "kind"), "result": text(data, "result"),
                    "member_id": uuid_field(data, "member_id", "見守りをした構成員")}
            if at := japan_moment(text(data, "at"), "at", "見守り"):
                body["at"] = at
            await apis(request).post(HOUSING, f"/v1/supports/{support_id}/check-ins", session.token, body,
                                     idempotency_key=request_key(data))
        return await act(request, session, support_id, "check_in", do, "見守りを記録しました。")

    # check-ins ----------------------------------------------------------------------------------

    async def check_ins_page(request: Request, session: Session, error: ApiRefused | None = None) -> Response:
        housing = apis(request)
        due = await housing.get(HOUSING, "/v1/check-ins", session.token, due="today")
        missed = await housing.get(HOUSING, "/v1/check-ins", session.token, missed="true")
        members = await members_of(request, session)
        return pages(request).render(
            request, "council/check_ins.html", session, status_code=error.status if error else 200,
            due=due["items"], missed=missed["items"], names={m["member_id"]: m["name"] for m in members},
            quick=QUICK_RESULTS, error=error)

    @router.get("/check-ins")
    async def check_ins(request: Request, session: Session = Depends(COUNCIL)) -> Response:
        return await check_ins_page(request, session)

    @router.post("/check-ins")
    async def record_quick_check_in(request: Request, session: Session = Depends(COUNCIL)) -> Response:
        """The second tap: one button per likely result, recorded as the support's lead member."""
        data = await form(request, session)
        try:
            support_id = uuid_field(data, "support_id", "居住支援")
            body = {"kind": text(data, "kind"), "result": text(data, "result"),
                    "member_id": uuid_field(data, "member_id", "見守りをした構成員")}
            await apis(request).post(HOUSING, f"/v1/supports/{support_id}/check-ins", session.token, body,
                                     idempotency_key=request_key(data))
        except Invalid as invalid:
            return await check_ins_page(request, session, invalid.refusal)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await check_ins_page(request, session, refused)
        return redirect("/council/check-ins", f"見守り（{labels.label('CheckInResult', body['result'])}）を記録しました。")

    # overview -----------------------------------------------------------------------------------

    @router.get("/overview")
    async def overview(request: Request, month: str = "", session: Session = Depends(COUNCIL)) -> Response:
        today = labels.today()
        month = month.strip() or f"{today:%Y-%m}"
        matched = MONTH.match(month)
        if matched is None:
            return pages(request).render(
                request, "council/overview.html", session, status_code=422, month=month, figures=None,
                error=ApiRefused(422, "月は「2026-11」の形で選んでください。", "give the month as YYYY-MM"))
        first = date(int(matched[1]), int(matched[2]), 1)
        figures = await apis(request).get(HOUSING, "/v1/overview", session.token, month=first.isoformat())
        most = max([s["count"] for s in figures["supports_by_stage"]] +
                   [r["count"] for r in figures["tenancies_ended_by_reason"]] + [1])
        return pages(request).render(request, "council/overview.html", session, month=month, figures=figures,
                                     era=era_month(first), most=most, error=None)

    # members ------------------------------------------------------------------------------------

    async def members_page(request: Request, session: Session, error: ApiRefused | None = None,
                           data: FormData | None = None) -> Response:
        return pages(request).render(request, "council/members.html", session,
                                     status_code=error.status if error else 200,
                                     members=await members_of(request, session), error=error,
                                     given=data or {}, given_roles=data.getlist("takes_on") if data else [])

    @router.get("/members")
    async def members(request: Request, session: Session = Depends(COUNCIL)) -> Response:
        return await members_page(request, session)

    @router.post("/members")
    async def register_member(request: Request, session: Session = Depends(COUNCIL)) -> Response:
        data = await form(request, session)
        kind = text(data, "kind")
        body: dict[str, Any] = {"kind": kind, "name": text(data, "name"), "takes_on": data.getlist("takes_on")}
        try:
            if kind == "division":
                body["division"] = text(data, "division")
            elif kind == "partner":
                body["partner_id"] = uuid_field(data, "partner_id", "連携団体ID")
            await apis(request).post(HOUSING, "/v1/members", session.token, body)
        except Invalid as invalid:
            return await members_page(request, session, invalid.refusal, data)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await members_page(request, session, refused, data)
        return redirect("/council/members", "構成員を登録しました。")

    return router
