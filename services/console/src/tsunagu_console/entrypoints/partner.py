"""Pages of the partner role (連携団体): the inbox of referrals addressed to it, one referral with the
person's details on request and the answer forms, and the delivery and provision records.

Everything is read from partner-notification with the partner's own API token. The person's details
are fetched only when the partner presses the button that says the viewing is recorded: each
fetch is a provision of personal data (個人情報保護法 art. 29) recorded under the partner's name.
"""

from __future__ import annotations


from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.sessions import Session
from tsunagu_console.domain.labels import label
from tsunagu_console.entrypoints.pages import apis, form, pages, path_id, redirect, signed_in

PARTNER = signed_in("partner")
PAGE_SIZE = 200
"""Referrals read at once: the inbox shows one page, the referral page looks through a few."""
PAGES_SEARCHED = 5

ITEMS_JA = {"name": "氏名", "name_kana": "ふりがな", "phone": "電話番号", "address": "住所"}
"""The items of a person a provision can hold (tsunagu_contracts.codes.PROVISION_ITEMS), as the page names them."""

DELIVERY_STATUS_JA = {"pending": "送信待ち", "sending": "送信中", "delivered": "配信済み", "dead": "配信できず",
                      "withdrawn": "同意撤回により取消", "cancelled": "利用停止により取消"}

# The answer each form sends, and the field of the form that carries its detail.
ANSWER_DETAIL = {"accepted": None, "declined": "decline_reason", "contact_made": "contact_method",
                 "completed": "outcome"}
ANSWERS_BY_STATUS = {"requested": ("accepted", "declined"), "accepted": ("contact_made", "completed"),
                     "contact_made": ("contact_made", "completed")}


def unanswered_first(referrals: list[dict]) -> list[dict]:
    """Referrals still waiting for the partner's first answer come first; newest first within each."""
    return sorted(referrals, key=lambda r: not waiting(r))


def waiting(referral: dict) -> bool:
    return referral["status"] == "requested" and not referral.get("last_response")


def not_found() -> ApiRefused:
    return ApiRefused(404, "この団体宛ての紹介が見つかりません。", "no referral with this id is addressed to this partner")


def basis_ja(basis: str) -> str:
    return "本人の同意" if basis == "consent" else label("LegalBasis", basis)


async def inbox_of(request: Request, session: Session, before: str | None = None) -> list[dict]:
    return await apis(request).get("partners", f"/v1/partners/{session.partner_id}/referrals", session.token,
                                   limit=PAGE_SIZE, before=before)


async def referral_of(request: Request, session: Session, referral_id: str) -> dict:
    """The referral as the partner's inbox lists it; 404 when it is not addressed to this partner."""
    before = None
    for _ in range(PAGES_SEARCHED):
        page = await inbox_of(request, session, before)
        for referral in page:
            if referral["referral_id"] == str(referral_id):
                return referral
        if len(page) < PAGE_SIZE:
            break
        before = page[-1]["referral_id"]
    raise not_found()


def answer_body(data) -> dict:
    """The answer a form sends; ApiRefused (422) when its detail is missing, before any service is asked."""
    response = str(data.get("response", ""))
    if response not in ANSWER_DETAIL:
        raise ApiRefused(422, "回答の種類を選んでください。", "choose an answer")
    body = {"response": response}
    detail = ANSWER_DETAIL[response]
    if detail is not None:
        value = str(data.get(detail, ""))
        if not value:
            names = {"decline_reason": "辞退の理由", "contact_method": "接触の方法", "outcome": "支援の結果"}
            raise ApiRefused(422, f"{names[detail]}を選んでください。", f"{detail} is required")
        body[detail] = value
    return body


def build_router() -> APIRouter:
    router = APIRouter(prefix="/partner")

    def show_referral(request: Request, session: Session, referral: dict, *, status_code: int = 200,
                      details: dict | None = None, error: ApiRefused | None = None) -> Response:
        return pages(request).render(
            request, "partner/referral.html", session, status_code=status_code, referral=referral, details=details,
            error=error, answers=ANSWERS_BY_STATUS.get(referral["status"], ()), items_ja=ITEMS_JA,
            basis_ja=basis_ja)

    @router.get("/inbox")
    async def inbox(request: Request, session: Session = Depends(PARTNER)) -> Response:
        referrals = unanswered_first(await inbox_of(request, session))
        return pages(request).render(request, "partner/inbox.html", session, referrals=referrals,
                                     waiting=sum(1 for r in referrals if waiting(r)), is_waiting=waiting)

    @router.get("/referrals/{referral_id}")
    async def referral(request: Request, referral_id: str, session: Session = Depends(PARTNER)) -> Response:
        return show_referral(request, session, await referral_of(request, session, path_id(referral_id)))

    @router.post("/referrals/{referral_id}/details")
    async def details(request: Request, referral_id: str, session: Session = Depends(PARTNER)) -> Response:
        """The person's details, fetched (and so recorded as a provision) only on this explicit request; shown
        on this answer alone, which no cache keeps (Cache-Control: no-store)."""
        await form(request, session)
        rid = path_id(referral_id)
        found = await referral_of(request, session, rid)
        try:
            fetched = await apis(request).get("partners", f"/v1/partners/{session.partner_id}/referrals/{rid}",
                                              session.token)
        except ApiRefused as refused:
            return show_referral(request, session, found, status_code=refused.status, error=refused)
        return show_referral(request, session, found, details=fetched)

    @router.post("/referrals/{referral_id}/responses")
    async def answer(request: Request, referral_id: str, session: Session = Depends(PARTNER)) -> Response:
        data = await form(request, session)
        rid = path_id(referral_id)
        try:
            body = answer_body(data)
            await apis(request).post("partners", f"/v1/partners/{session.partner_id}/referrals/{rid}/responses",
                                     session.token, body)
        except ApiRefused as refused:
            if refused.status == 401:
                raise
            return show_referral(request, session, await referral_of(request, session, rid),
                                 status_code=refused.status, error=refused)
        return redirect(f"/partner/referrals/{rid}",
                        f"回答「{label('PartnerResponseKind', body['response'])}」を記録しました。")

    @router.get("/deliveries")
    async def deliveries(request: Request, session: Session = Depends(PARTNER)) -> Response:
        partners = f"/v1/partners/{session.partner_id}"
        sent = await apis(request).get("partners", f"{partners}/deliveries", session.token, limit=100)
        provisions = await apis(request).get("partners", f"{partners}/provisions", session.token, limit=100)
        return pages(request).render(request, "partner/deliveries.html", session, deliveries=sent,
                                     provisions=provisions, delivery_status_ja=DELIVERY_STATUS_JA,
                                     items_ja=ITEMS_JA, basis_ja=basis_ja)

    return router
