"""Pages of the counter role (相談受付): registering a consultation in one form, a case with its
つなぐシート, and the follow-ups waiting for the person's answer. Coordinators use them too.

Everything shown comes from intake's and referral's public APIs with the signed-in staff member's
token; a refusal of a form is shown beside its fields, with what was entered kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import Session
from tsunagu_console.entrypoints.pages import apis, form, pages, redirect, signed_in

STAFF = signed_in("counter", "coordinator")
CONSENT_ROWS = 3
"""Consent rows on the registration form: one recipient and one purpose each."""
PERSON_FIELDS = ("name", "name_kana", "birth_date", "phone", "address")
OPTIONAL_PERSON_FIELDS = {"phone", "address"}


@dataclass
class Entered:
    """What staff typed into a form, kept to show it again, and the refusals to show beside it."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def refused(self, exc: ApiRefused, fields: dict[str, str] | None = None) -> None:
        """A service's refusal: each field error beside its field (named as the API names it, or
        through `fields`), the rest at the top of the form."""
        for error in exc.fields:
            name = str(error.get("field") or "")
            name = (fields or {}).get(name, name)
            message = str(error.get("message_ja") or exc.message_ja)
            if name:
                self.errors.setdefault(name, message)
            else:
                self.general.append(message)
        if not exc.fields:
            self.general.append(exc.message_ja)


def _recipient(data: FormData, prefix: str, errors: dict[str, str]) -> dict | None:
    """A recipient from a division select and an optional partner id (a partner wins when given)."""
    partner = str(data.get(f"{prefix}partner_id") or "").strip()
    division = str(data.get(f"{prefix}division") or "")
    if partner:
        try:
            return {"kind": "partner", "partner_id": str(UUID(partner))}
        except ValueError:
            errors[f"{prefix}partner_id"] = "連携団体IDの形式が正しくありません。"
            return None
    if division:
        return {"kind": "division", "division": division}
    return None


def _consent(data: FormData, prefix: str, errors: dict[str, str]) -> dict | None:
    """One consent (recipient, purpose, method, until) from its fields, or None when left blank."""
    recipient = _recipient(data, prefix, errors)
    purpose, method = str(data.get(f"{prefix}purpose") or ""), str(data.get(f"{prefix}method") or "")
    until = str(data.get(f"{prefix}valid_until") or "")
    if recipient is None and not purpose and f"{prefix}partner_id" not in errors:
        return None
    if recipient is None and f"{prefix}partner_id" not in errors:
        errors[f"{prefix}division"] = "同意の相手（窓口または連携団体）を選んでください。"
    if not purpose:
        errors[f"{prefix}purpose"] = "同意の目的を選んでください。"
    if not method:
        errors[f"{prefix}method"] = "同意の方法を選んでください。"
    return {"recipient": recipient, "purpose": purpose, "method": method, "valid_until": until or None}


def consultation_of(data: FormData) -> tuple[dict, Entered]:
    """The registration form as intake's RegisterConsultation, and the form as entered."""
    entered = Entered(values={key: data.get(key) for key in data.keys()})
    entered.values.update(needs=data.getlist("needs"), cues=data.getlist("cues"))
    person = {}
    for name in PERSON_FIELDS:
        value = str(data.get(f"person.{name}") or "").strip()
        if value or name not in OPTIONAL_PERSON_FIELDS:
            person[name] = value
    consents = []
    for row in range(CONSENT_ROWS):
        consent = _consent(data, f"consents.{row}.", entered.errors)
        if consent is not None:
            consents.append(consent)
    body = {
        "person": person, "counter": data.get("counter") or None, "channel": data.get("channel") or None,
        "urgency": data.get("urgency") or None, "needs": list(dict.fromkeys(data.getlist("needs"))),
        "primary_need": data.get("primary_need") or None, "consents": consents,
        "notes": str(data.get("notes") or "").strip() or None,
    }
    if not body["primary_need"]:
        entered.errors["primary_need"] = "最も困っている課題（◎）を一つ選んでください。"
    return body, entered


# The API's names for the consent rows' fields, where the form splits a recipient in two.
def _consent_field_names(rows: int) -> dict[str, str]:
    names = {}
    for row in range(rows):
        names[f"consents.{row}.recipient"] = f"consents.{row}.division"
        names[f"consents.{row}.recipient.division"] = f"consents.{row}.division"
        names[f"consents.{row}.recipient.partner_id"] = f"consents.{row}.partner_id"
    return names


def build_router() -> APIRouter:
    router = APIRouter(prefix="/counter")

    async def chart(request: Request, session: Session) -> dict:
        return await apis(request).get("intake", "/v1/screening/chart", session.token)

    async def suggestions(request: Request, session: Session, cues: list[str], entered: Entered) -> dict | None:
        """The chart's suggested needs for the cues staff ticked, or a refusal beside the cues."""
        if not cues:
            entered.errors["cues"] = "気づいたことを一つ以上選んでから、提案を求めてください。"
            return None
        try:
            return await apis(request).post("intake", "/v1/screening", session.token, {"cues": cues})
        except ApiRefused as exc:
            entered.refused(exc, {"cues": "cues"})
            return None

    async def registry(request: Request, session: Session) -> list[dict]:
        """The partner registry as a counter reads it: each partner's id, name and whether it is active."""
        return await apis(request).get("partners", "/v1/partners", session.token)

    async def active_partners(request: Request, session: Session) -> list[dict]:
        """The partners a new consent can name."""
        return [p for p in await registry(request, session) if p.get("active", True)]

    async def consultation_form(request: Request, session: Session, entered: Entered | None = None,
                                suggested: dict | None = None, duplicates: list[str] | None = None,
                                status_code: int = 200) -> Response:
        entered = entered or Entered(values={"channel": "counter", "urgency": "normal"})
        return pages(request).render(
            request, "counter/consultation_new.html", session, status_code=status_code,
            chart=await chart(request, session), v=entered.values, errors=entered.errors, general=entered.general,
            suggested=suggested, duplicates=duplicates or [], consent_rows=range(CONSENT_ROWS),
            partners=await active_partners(request, session))

    async def same_person(request: Request, session: Session, data: FormData, body: dict,
                          entered: Entered) -> list[str]:
        """Before someone is registered as new: the persons intake already knows by the same kana name
        and birth date, for staff to decide. Once they have decided (`person_choice`), the consultation
        goes to the person they chose, or to a new person."""
        choice = data.get("person_choice")
        if choice == "new":
            return []
        if choice:
            try:
                body["person_ref"] = str(UUID(str(choice)))
            except ValueError:
                entered.errors["person_choice"] = "登録する相談者を選び直してください。"
                return []
            del body["person"]
            return []
        person = body["person"]
        if not person.get("name_kana") or not person.get("birth_date"):
            return []  # intake's refusal of the registration says what is missing
        try:
            found = await apis(request).post("intake", "/v1/persons/possible-duplicates", session.token,
                                             {"name_kana": person["name_kana"], "birth_date": person["birth_date"]})
        except ApiRefused:
            return []  # the same fields are refused, beside them, by the registration itself
        return [str(ref) for ref in found.get("possible_duplicates") or []]

    @router.get("/consultations/new")
    async def new_consultation(request: Request, session: Session = Depends(STAFF)) -> Response:
        return await consultation_form(request, session)

    @router.post("/consultations/new")
    async def post_consultation(request: Request, session: Session = Depends(STAFF)) -> Response:
        data = await form(request, session)
        body, entered = consultation_of(data)
        cues = list(dict.fromkeys(data.getlist("cues")))
        if data.get("action") == "suggest":
            entered.errors.pop("primary_need", None)  # not asked for yet: only the suggestions are
            suggested = await suggestions(request, session, cues, entered)
            # 200 even when no suggestion could be made: nothing was submitted, and htmx swaps in only
            # a 2xx answer, so the reason reaches the page with JavaScript too.
            return await consultation_form(request, session, entered, suggested)
        if cues:
            # What staff confirmed from the chart: the needs they ticked that the chart suggested.
            suggested = await suggestions(request, session, cues, entered)
            if suggested:
                offered = {s["need"] for s in suggested.get("suggestions", [])}
                body["screening"] = {"chart_version": suggested["chart_version"], "cues": cues,
                                     "confirmed": [n for n in body["needs"] if n in offered]}
        if entered.errors:
            return await consultation_form(request, session, entered, status_code=422)
        known = await same_person(request, session, data, body, entered)
        if known:
            return await consultation_form(request, session, entered, duplicates=known, status_code=409)
        if entered.errors:
            return await consultation_form(request, session, entered, status_code=422)
        try:
            created = await apis(request).post("intake", "/v1/consultations", session.token, body)
        except ApiRefused as exc:
            if exc.status not in (400, 409, 422):
                raise
            entered.refused(exc, _consent_field_names(CONSENT_ROWS))
            return await consultation_form(request, session, entered, status_code=exc.status)
        path = f"/counter/cases/{created['case_id']}"
        duplicates = [str(ref) for ref in created.get("possible_duplicates") or []]
        if duplicates:
            path += "?" + urlencode([("duplicate_of", ref) for ref in duplicates])
        flash = "相談を登録しました。"
        if created.get("warning_ja"):
            flash += created["warning_ja"]
        return redirect(path, flash)

    async def case_page(request: Request, session: Session, case_id: UUID, entered: Entered | None = None,
                        status_code: int = 200) -> Response:
        token = session.token
        case = await apis(request).get("intake", f"/v1/cases/{case_id}", token)
        try:
            sheet = await apis(request).get("referral", f"/v1/cases/{case_id}/referrals", token)
        except ApiRefused as exc:
            if exc.status != 404:
                raise
            sheet = None  # the sheet is opened from intake's event, moments after the registration
        follow_ups = await apis(request).get("referral", "/v1/follow-ups", token, case_id=str(case_id))
        primary = {c.get("primary_need") for c in case.get("consultations", [])}
        duplicates = []
        for ref in request.query_params.getlist("duplicate_of"):
            try:
                duplicates.append(str(UUID(ref)))
            except ValueError:
                continue
        entered = entered or Entered()
        partners = await registry(request, session)
        return pages(request).render(
            request, "counter/case.html", session, status_code=status_code, case=case, sheet=sheet,
            partners=[p for p in partners if p.get("active", True)],
            partner_names={p["partner_id"]: p["name"] for p in partners},
            follow_ups=follow_ups, primary=primary, duplicates=duplicates, v=entered.values, errors=entered.errors,
            general=entered.general)

    @router.get("/cases/{case_id}")
    async def show_case(request: Request, case_id: UUID, session: Session = Depends(STAFF)) -> Response:
        return await case_page(request, session, case_id)

    @router.post("/cases/{case_id}/needs")
    async def add_need(request: Request, case_id: UUID, session: Session = Depends(STAFF)) -> Response:
        data = await form(request, session)
        entered = Entered(values={f"need.{k}": data.get(k) for k in data.keys()})
        body = {"need": data.get("need") or None, "identified_by": data.get("identified_by") or None}
        try:
            await apis(request).post("intake", f"/v1/cases/{case_id}/needs", session.token, body)
        except ApiRefused as exc:
            if exc.status not in (400, 409, 422):
                raise
            entered.refused(exc, {"need": "need.need", "identified_by": "need.identified_by"})
            return await case_page(request, session, case_id, entered, status_code=exc.status)
        return redirect(f"/counter/cases/{case_id}", "課題を追加しました。")

    @router.post("/cases/{case_id}/consents")
    async def add_consent(request: Request, case_id: UUID, session: Session = Depends(STAFF)) -> Response:
        data = await form(request, session)
        entered = Entered(values={k: data.get(k) for k in data.keys()})
        body = _consent(data, "consent.", entered.errors) or {}
        if not body:
            entered.errors["consent.division"] = "同意の相手（窓口または連携団体）を選んでください。"
        if entered.errors:
            return await case_page(request, session, case_id, entered, status_code=422)
        try:
            await apis(request).post("intake", f"/v1/cases/{case_id}/consents", session.token, body)
        except ApiRefused as exc:
            if exc.status not in (400, 409, 422):
                raise
            entered.refused(exc, {"recipient": "consent.division", "recipient.division": "consent.division",
                                  "recipient.partner_id": "consent.partner_id", "purpose": "consent.purpose",
                                  "method": "consent.method", "valid_until": "consent.valid_until"})
            return await case_page(request, session, case_id, entered, status_code=exc.status)
        return redirect(f"/counter/cases/{case_id}", "本人同意を記録しました。")

    @router.post("/cases/{case_id}/consents/{consent_id}/withdrawal")
    async def withdraw_consent(request: Request, case_id: UUID, consent_id: UUID,
                               session: Session = Depends(STAFF)) -> Response:
        await form(request, session)
        await apis(request).post("intake", f"/v1/consents/{consent_id}/withdrawal", session.token)
        return redirect(f"/counter/cases/{case_id}", "同意の撤回を記録しました。")

    @router.get("/follow-ups")
    async def follow_ups(request: Request, counter: str = "", session: Session = Depends(STAFF)) -> Response:
        waiting = await apis(request).get("referral", "/v1/follow-ups", session.token, counter=counter, limit=500)
        return pages(request).render(request, "counter/follow_ups.html", session, follow_ups=waiting,
                                     counter=counter)

    @router.post("/follow-ups/{follow_up_id}/answer")
    async def answer_follow_up(request: Request, follow_up_id: UUID, session: Session = Depends(STAFF)) -> Response:
        data = await form(request, session)
        outcome = data.get("outcome") or None
        if outcome is None:
            return pages(request).render(
                request, "counter/follow_ups.html", session, status_code=422, counter="",
                follow_ups=await apis(request).get("referral", "/v1/follow-ups", session.token, limit=500),
                answer_error={"id": str(follow_up_id), "message": "本人の回答を選んでください。"})
        await apis(request).post("referral", f"/v1/follow-ups/{follow_up_id}/answer", session.token,
                                 {"outcome": outcome})
        return redirect("/counter/follow-ups", "フォローアップの回答を記録しました。")

    return router
