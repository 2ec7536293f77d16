"""Pages of the coordinator role (自立相談支援): the referrals queue, the routing table, the partner
registry and the reports.

Every page reads referral's and partner-notification's public APIs with the coordinator's own
token. A form the service refuses (409, 422, ...) is answered by its page again with the service's
own message; a success by a redirect with a one-time message. One-time secrets (a new partner's API
token and webhook secret, a rotated credential) are shown on the answer to the POST itself, never
carried in a cookie or a URL, and the page is not cached (`Pages.render` sets `no-store`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import Session
from tsunagu_console.domain import labels
from tsunagu_console.entrypoints.pages import apis, form, pages, path_id, redirect, signed_in
from tsunagu_contracts import CATALOGUE

COORDINATOR = signed_in("coordinator")
EVENT_TYPES = [e.type for e in CATALOGUE]
CANDIDATE_SLOTS = 4
"""How many candidates the routing form offers per need (the first is asked first)."""


def _code(data: FormData, name: str, code_list: str) -> str | None:
    value = str(data.get(name, ""))
    return value if value in dict(labels.options(code_list)) else None


def recipient_key(recipient: dict) -> str:
    """`partner:<id>` or `division:<code>`: one form value per recipient."""
    return f"{recipient.get('kind')}:{recipient.get('partner_id') or recipient.get('division')}"


def recipient_of(key: str, partner_ids: set[str]) -> dict | None:
    kind, _, value = key.partition(":")
    if kind == "partner" and value in partner_ids:
        return {"kind": "partner", "partner_id": value}
    if kind == "division" and value in dict(labels.options("Division")):
        return {"kind": "division", "division": value}
    return None


def recipient_names(partners: list[dict]) -> dict[str, str]:
    names = {f"division:{code}": text for code, text in labels.options("Division")}
    names.update({f"partner:{p['partner_id']}": p["name"] for p in partners})
    return names


def month_so_far() -> tuple[date, date]:
    today = labels.today()
    return today.replace(day=1), today


def bars(rows: list[dict], key: str) -> dict[int, int]:
    """Each row's bar width in percent of the largest figure (0 when all are 0)."""
    top = max((r.get(key) or 0 for r in rows), default=0)
    return {i: round(100 * (r.get(key) or 0) / top) if top else 0 for i, r in enumerate(rows)}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/coordinator")

    # Referrals ----------------------------------------------------------------------------------

    async def referrals_page(request: Request, session: Session, *, error: str = "", status_code: int = 200):
        api = apis(request)
        referrals = await api.get("referral", "/v1/referrals", session.token, limit=200)
        routing = await api.get("referral", "/v1/routing", session.token)
        partners = await api.get("partners", "/v1/partners", session.token)
        names = recipient_names(partners)
        reroutes = {r["referral_id"]: [(recipient_key(c), names.get(recipient_key(c), recipient_key(c)))
                                       for c in routing.get(r["need"], [])
                                       if recipient_key(c) != recipient_key(r["recipient"])]
                    for r in referrals}
        return pages(request).render(request, "coordinator/referrals.html", session, status_code=status_code,
                                     referrals=referrals, names=names, reroutes=reroutes, error=error)

    @router.get("/referrals")
    async def referrals(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        return await referrals_page(request, session)

    async def act(request: Request, session: Session, call, done: str) -> Response:
        """Run one action on the service; its refusal is shown on the list, in its own words."""
        try:
            await call()
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await referrals_page(request, session, error=refused.message_ja, status_code=refused.status)
        return redirect("/coordinator/referrals", done)

    async def invalid(request: Request, session: Session, message_ja: str) -> Response:
        return await referrals_page(request, session, error=message_ja, status_code=422)

    @router.post("/referrals/{referral_id}/accept")
    async def accept(referral_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        await form(request, session)
        path = f"/v1/referrals/{path_id(referral_id)}/acceptance"
        return await act(request, session, lambda: apis(request).post("referral", path, session.token),
                         "紹介の受理を記録しました。")

    @router.post("/referrals/{referral_id}/decline")
    async def decline(referral_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        path = f"/v1/referrals/{path_id(referral_id)}/decline"
        if (reason := _code(data, "reason", "DeclineReason")) is None:
            return await invalid(request, session, "辞退の理由を選んでください。")
        return await act(request, session, lambda: apis(request).post(
            "referral", path, session.token, {"reason": reason}), "辞退を記録しました。次の候補に紹介します。")

    @router.post("/referrals/{referral_id}/reroute")
    async def reroute(referral_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        path = f"/v1/referrals/{path_id(referral_id)}/reroute"
        partners = await apis(request).get("partners", "/v1/partners", session.token)
        recipient = recipient_of(str(data.get("recipient", "")), {p["partner_id"] for p in partners})
        if recipient is None:
            return await invalid(request, session, "つなぎ直す先を選んでください。")
        return await act(request, session, lambda: apis(request).post(
            "referral", path, session.token, {"recipient": recipient}), "つなぎ直しを記録しました。")

    @router.post("/cases/{case_id}/close")
    async def close_case(case_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        path = f"/v1/cases/{path_id(case_id)}/closure"
        if (reason := _code(data, "reason", "CaseClosureReason")) is None:
            return await invalid(request, session, "終了の理由を選んでください。")
        return await act(request, session, lambda: apis(request).post(
            "referral", path, session.token, {"reason": reason}), "相談（ケース）の終了を記録しました。")

    # Routing ------------------------------------------------------------------------------------

    async def routing_page(request: Request, session: Session, *, error: str = "", error_need: str = "",
                           status_code: int = 200) -> Response:
        api = apis(request)
        first, last = month_so_far()
        routing = await api.get("referral", "/v1/routing", session.token)
        partners = await api.get("partners", "/v1/partners", session.token)
        report = await api.get("referral", "/v1/reports/partners", session.token,
                               **{"from": first.isoformat(), "to": last.isoformat()})
        figures = {recipient_key(r): r for r in (report or {}).get("recipients", [])}
        choices = [(f"partner:{p['partner_id']}", p["name"]) for p in partners if p["active"]]
        choices += [(f"division:{code}", text) for code, text in labels.options("Division")]
        table = {need: [recipient_key(c) for c in routing.get(need, [])] for need, _ in labels.options("NeedCategory")}
        return pages(request).render(request, "coordinator/routing.html", session, status_code=status_code,
                                     table=table, names=recipient_names(partners), figures=figures,
                                     choices=choices, slots=CANDIDATE_SLOTS, first=first, last=last,
                                     error=error, error_need=error_need)

    @router.get("/routing")
    async def routing(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        return await routing_page(request, session)

    @router.post("/routing/{need}")
    async def set_routing(need: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        if need not in dict(labels.options("NeedCategory")):
            raise HTTPException(404)
        partners = await apis(request).get("partners", "/v1/partners", session.token)
        ids = {p["partner_id"] for p in partners}
        keys = [str(k) for k in data.getlist("candidate") if k]
        candidates = [recipient_of(k, ids) for k in keys]
        if None in candidates or len(set(keys)) != len(keys):
            return await routing_page(request, session, error_need=need, status_code=422,
                                      error="候補は一覧から選び、同じ紹介先を二度選ばないでください。")
        try:
            await apis(request).put("referral", f"/v1/routing/{need}", session.token, {"candidates": candidates})
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await routing_page(request, session, error=refused.message_ja, error_need=need,
                                      status_code=refused.status)
        return redirect("/coordinator/routing", f"「{labels.label('NeedCategory', need)}」の振り分けを記録しました。")

    # Partners -----------------------------------------------------------------------------------

    @router.get("/partners")
    async def partner_list(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        partners = await apis(request).get("partners", "/v1/partners", session.token)
        return pages(request).render(request, "coordinator/partners.html", session, partners=partners)

    def registration_page(request: Request, session: Session, values: dict, errors: list[dict] | None = None,
                          error: str = "", status_code: int = 200) -> Response:
        return pages(request).render(request, "coordinator/partner_new.html", session, status_code=status_code,
                                     values=values, errors=errors or [], error=error)

    @router.get("/partners/new")
    async def new_partner(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        return registration_page(request, session, {"need_categories": [], "kafka_topic": False})

    @router.post("/partners")
    async def register(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        values = {"name": str(data.get("name", "")).strip(), "need_categories": data.getlist("need_categories"),
                  "areas": str(data.get("areas", "")), "department": str(data.get("department", "")).strip(),
                  "email": str(data.get("email", "")).strip(), "phone": str(data.get("phone", "")).strip(),
                  "webhook_url": str(data.get("webhook_url", "")).strip(), "kafka_topic": bool(data.get("kafka_topic"))}
        body = {"name": values["name"], "need_categories": values["need_categories"],
                "areas": values["areas"].replace("、", " ").replace(",", " ").split(),
                "contact": {"department": values["department"], "email": values["email"],
                            "phone": values["phone"] or None},
                "webhook_url": values["webhook_url"] or None, "kafka_topic": values["kafka_topic"]}
        try:
            created = await apis(request).post("partners", "/v1/partners", session.token, body)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return registration_page(request, session, values, refused.fields, refused.message_ja,
                                     status_code=refused.status)
        # The secrets are on this answer alone: not in the flash cookie, not in a URL.
        return pages(request).render(request, "coordinator/secrets.html", session, status_code=201,
                                     title="連携団体を登録しました", partner_id=created["partner_id"],
                                     partner_name=values["name"], notice=created.get("notice_ja", ""),
                                     secrets=_secrets(created))

    async def partner_page(request: Request, session: Session, partner_id: str, *, error: str = "",
                           status_code: int = 200) -> Response:
        api = apis(request)
        partner = await api.get("partners", f"/v1/partners/{partner_id}", session.token)
        deliveries = await api.get("partners", f"/v1/partners/{partner_id}/deliveries", session.token, limit=50)
        return pages(request).render(request, "coordinator/partner.html", session, status_code=status_code,
                                     partner=partner, deliveries=deliveries, event_types=EVENT_TYPES, error=error)

    @router.get("/partners/{partner_id}")
    async def partner_detail(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        return await partner_page(request, session, path_id(partner_id))

    async def partner_act(request: Request, session: Session, partner_id: str, call, done: str) -> Response:
        try:
            await call()
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await partner_page(request, session, partner_id, error=refused.message_ja,
                                      status_code=refused.status)
        return redirect(f"/coordinator/partners/{partner_id}", done)

    @router.post("/partners/{partner_id}/subscription")
    async def subscription(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        partner_id = path_id(partner_id)
        body = {"event_types": [t for t in data.getlist("event_types") if t in EVENT_TYPES],
                "need_categories": [str(n) for n in data.getlist("need_categories")],
                "areas": str(data.get("areas", "")).replace("、", " ").replace(",", " ").split()}
        return await partner_act(request, session, partner_id, lambda: apis(request).put(
            "partners", f"/v1/partners/{partner_id}/subscription", session.token, body), "購読の設定を記録しました。")

    @router.post("/partners/{partner_id}/deliveries/{delivery_id}/redeliver")
    async def redeliver(partner_id: str, delivery_id: str, request: Request,
                        session: Session = Depends(COORDINATOR)) -> Response:
        await form(request, session)
        partner_id = path_id(partner_id)
        path = f"/v1/partners/{partner_id}/deliveries/{path_id(delivery_id)}/redelivery"
        return await partner_act(request, session, partner_id, lambda: apis(request).post(
            "partners", path, session.token), "再配信を予定しました。")

    @router.post("/partners/{partner_id}/webhook/enable")
    async def enable_webhook(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        await form(request, session)
        partner_id = path_id(partner_id)
        return await partner_act(request, session, partner_id, lambda: apis(request).post(
            "partners", f"/v1/partners/{partner_id}/webhook/enable", session.token), "Webhook を再開しました。")

    async def show_secrets(request: Request, session: Session, partner_id: str, call, title: str) -> Response:
        try:
            answer = await call()
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return await partner_page(request, session, partner_id, error=refused.message_ja,
                                      status_code=refused.status)
        found = _secrets(answer)
        if not found:  # a move of the webhook that kept its secret: nothing to show once
            return redirect(f"/coordinator/partners/{partner_id}", f"{title}。")
        partner = await apis(request).get("partners", f"/v1/partners/{partner_id}", session.token)
        return pages(request).render(request, "coordinator/secrets.html", session, title=title,
                                     partner_id=partner_id, partner_name=partner["name"],
                                     notice=answer.get("notice_ja", ""), secrets=found)

    @router.post("/partners/{partner_id}/api-token/rotate")
    async def rotate_token(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        await form(request, session)
        partner_id = path_id(partner_id)
        return await show_secrets(request, session, partner_id, lambda: apis(request).post(
            "partners", f"/v1/partners/{partner_id}/api-token/rotate", session.token), "API トークンを更新しました")

    @router.post("/partners/{partner_id}/webhook-secret/rotate")
    async def rotate_secret(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        await form(request, session)
        partner_id = path_id(partner_id)
        return await show_secrets(request, session, partner_id, lambda: apis(request).post(
            "partners", f"/v1/partners/{partner_id}/webhook-secret/rotate", session.token),
            "Webhook シークレットを更新しました")

    @router.post("/partners/{partner_id}/webhook")
    async def move_webhook(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        partner_id = path_id(partner_id)
        url = str(data.get("webhook_url", "")).strip()
        if not url:
            return await partner_page(request, session, partner_id, error="新しい Webhook URL を入力してください。",
                                      status_code=422)
        return await show_secrets(request, session, partner_id, lambda: apis(request).put(
            "partners", f"/v1/partners/{partner_id}/webhook", session.token, {"webhook_url": url}),
            "Webhook URL を変更しました")

    @router.get("/partners/{partner_id}/deactivate")
    async def confirm_deactivation(partner_id: str, request: Request,
                                   session: Session = Depends(COORDINATOR)) -> Response:
        partner = await apis(request).get("partners", f"/v1/partners/{path_id(partner_id)}", session.token)
        return pages(request).render(request, "coordinator/deactivate.html", session, partner=partner)

    @router.post("/partners/{partner_id}/deactivate")
    async def deactivate(partner_id: str, request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        data = await form(request, session)
        partner_id = path_id(partner_id)
        if data.get("confirm") != "yes":
            return redirect(f"/coordinator/partners/{partner_id}/deactivate")
        return await partner_act(request, session, partner_id, lambda: apis(request).post(
            "partners", f"/v1/partners/{partner_id}/deactivate", session.token), "連携団体の利用を停止しました。")

    # Reports ------------------------------------------------------------------------------------

    @router.get("/reports")
    async def reports(request: Request, session: Session = Depends(COORDINATOR)) -> Response:
        first, last = month_so_far()
        period = {"from": request.query_params.get("from") or first.isoformat(),
                  "to": request.query_params.get("to") or last.isoformat()}
        try:
            date.fromisoformat(period["from"]), date.fromisoformat(period["to"])
        except ValueError:
            return pages(request).render(request, "coordinator/reports.html", session, status_code=422,
                                         period=period, error="日付は YYYY-MM-DD の形で入力してください。")
        api = apis(request)
        try:
            summary = await api.get("referral", "/v1/reports/summary", session.token, **period)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return pages(request).render(request, "coordinator/reports.html", session, status_code=refused.status,
                                         period=period, error=refused.message_ja,
                                         errors=[f.get("message_ja", "") for f in refused.fields])
        partners = await api.get("referral", "/v1/reports/partners", session.token, **period)
        declines = await api.get("referral", "/v1/reports/declines", session.token, **period)
        # referral knows partners by id alone; their names are partner-notification's.
        names = recipient_names(await api.get("partners", "/v1/partners", session.token))
        return pages(request).render(
            request, "coordinator/reports.html", session, period=period, summary=summary, partners=partners,
            names=names, recipient_key=recipient_key,
            declines=declines, need_bars=bars(summary.get("referrals_by_need", []), "referrals"),
            partner_bars=bars(partners.get("recipients", []), "referrals_received"),
            decline_bars=bars(declines.get("by_reason_and_need", []), "count"))

    return router


def _secrets(answer: Any) -> list[tuple[str, str]]:
    """(label, value) of each one-time secret in a service's answer."""
    found = []
    if not isinstance(answer, dict):
        return found
    if answer.get("api_token"):
        found.append(("API トークン", answer["api_token"]))
    if answer.get("webhook_secret"):
        found.append(("Webhook シークレット", answer["webhook_secret"]))
    kafka = answer.get("kafka_credentials") or {}
    if kafka.get("password"):
        found.append(("Kafka ユーザー名", kafka.get("username", "")))
        found.append(("Kafka パスワード", kafka["password"]))
    return found
