"""Signing in and out, the home page of each role, and the console's own health and metrics."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tsunagu_console.adapters.apis import ApiRefused
from tsunagu_console.adapters.oidc import PENDING_SECONDS, Pending, ProviderUnavailable, SignInRefused
from tsunagu_console.adapters.sessions import COOKIE
from tsunagu_console.entrypoints.pages import HOME, apis, pages, redirect, safe_next, signed_in
from tsunagu_servicehost.auth import PARTNER_SESSION_SECONDS, Role, staff_token

log = logging.getLogger("tsunagu.console")
SIGN_IN_CSRF = "tsunagu_signin"
MAX_COOKIE_CHARS = 3900
"""Browsers keep cookies of up to 4096 bytes, name and attributes included."""
OIDC_PENDING = "tsunagu_oidc"
"""The sign-in on its way through the identity provider (state, nonce, PKCE verifier), sealed. SameSite=Lax:
the provider's redirect back is a cross-site navigation, which a Strict cookie would not come back with."""
STAFF_ROLES = {Role.COUNTER.value: "相談窓口", Role.COORDINATOR.value: "自立相談支援（コーディネーター）",
               Role.COUNCIL.value: "居住支援協議会", Role.OPS.value: "運用担当"}


def build_router(registry: CollectorRegistry, settings) -> APIRouter:
    router = APIRouter()
    dev_key = settings.console_dev_staff_key.get_secret_value()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        checks = await apis(request).healthy()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/")
    async def home(request: Request) -> Response:
        session = pages(request).sessions.open(request.cookies.get(COOKIE))
        return redirect(HOME[session.role] if session else "/signin")

    @router.get("/signin")
    async def sign_in_page(request: Request, next: str = "") -> Response:
        return _sign_in_page(request, next=safe_next(next))

    def _sign_in_page(request: Request, *, next: str = "", error: str = "", status_code: int = 200,
                      partner_id: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        response = pages(request).render(request, "signin.html", None, status_code=status_code, next=next,
                                         error=error, sign_in_csrf=token, staff_roles=STAFF_ROLES if dev_key else {},
                                         partner_id=partner_id, oidc=request.app.state.oidc is not None)
        response.set_cookie(SIGN_IN_CSRF, token, max_age=1800, httponly=True, samesite="strict",
                            secure=pages(request).sessions.secure, path="/signin")
        return response

    async def _sign_in_form(request: Request):
        data = await request.form()
        if not data.get("csrf") or data.get("csrf") != request.cookies.get(SIGN_IN_CSRF):
            return None
        return data

    @router.post("/signin/staff")
    async def sign_in_staff(request: Request) -> Response:
        """Development only: the development issuer signs the chosen role's token. A city's staff sign in
        at its identity provider instead."""
        data = await _sign_in_form(request)
        if data is None:
            return _sign_in_page(request, error="フォームの有効期限が切れました。もう一度お試しください。",
                                 status_code=403)
        role = str(data.get("role", ""))
        if not dev_key or role not in STAFF_ROLES:
            return _sign_in_page(request, error="この方法ではサインインできません。", status_code=403)
        token = staff_token(dev_key, kid=settings.dev_staff_kid, issuer=settings.staff_issuer,
                            audience=settings.staff_audience, subject=f"dev-{role}", role=Role(role),
                            ttl_seconds=int(settings.console_session_hours * 3600))
        session = pages(request).sessions.new(kind="staff", role=role, subject=f"dev-{role}",
                                              display_name=STAFF_ROLES[role], token=token)
        return pages(request).sign_in(redirect(safe_next(str(data.get("next", ""))) or HOME[role]), session)

    @router.post("/signin/oidc")
    async def sign_in_oidc(request: Request) -> Response:
        """Staff sign in at the city's identity provider: off they go, with a sealed note of what the
        provider's answer must match."""
        data = await _sign_in_form(request)
        if data is None:
            return _sign_in_page(request, error="フォームの有効期限が切れました。もう一度お試しください。",
                                 status_code=403)
        oidc = request.app.state.oidc
        if oidc is None:
            return _sign_in_page(request, error="この方法ではサインインできません。", status_code=403)
        try:
            url, pending = await oidc.start(safe_next(str(data.get("next", ""))))
        except ProviderUnavailable as exc:
            log.warning("the identity provider is unavailable: %s", exc)
            return _provider_unavailable(request)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(OIDC_PENDING, pages(request).sessions.seal_value(asdict(pending)), max_age=PENDING_SECONDS,
                            httponly=True, samesite="lax", secure=pages(request).sessions.secure, path="/signin/oidc")
        return response

    @router.get("/signin/oidc/callback")
    async def sign_in_oidc_callback(request: Request) -> Response:
        """The provider sends the browser back here with a code; the console checks everything before
        anyone is signed in. The pending note is used once, whatever the outcome."""
        oidc = request.app.state.oidc
        if oidc is None:
            return pages(request).error(request, 404, "ページが見つかりません。", "Not found.")
        sealed = pages(request).sessions.open_value(request.cookies.get(OIDC_PENDING), ttl=PENDING_SECONDS)
        try:
            if sealed is None:
                raise SignInRefused("サインインの手続きの有効期限が切れました。もう一度サインインしてください。",
                                    "The sign-in has expired or was not started here; sign in again.")
            pending = Pending(**sealed)
            signed = await oidc.finish(pending, dict(request.query_params))
            seconds = signed.expires - int(time.time())
            if seconds <= 0:
                raise SignInRefused("サインインの有効期限が切れています。もう一度サインインしてください。",
                                    "The identity provider's token has already expired.")
        except (SignInRefused, TypeError) as exc:
            refused = exc if isinstance(exc, SignInRefused) else SignInRefused(
                "サインインできませんでした。もう一度お試しください。", "The sign-in could not be verified.")
            return _forget_pending(pages(request).error(request, 403, refused.message_ja, refused.message_en))
        except ProviderUnavailable as exc:
            log.warning("the identity provider is unavailable: %s", exc)
            return _forget_pending(_provider_unavailable(request))
        role = signed.role.value
        session = pages(request).sessions.new(kind="staff", role=role, subject=signed.subject,
                                              display_name=STAFF_ROLES[role], token=signed.access_token,
                                              seconds=seconds, via_provider=True)
        if len(pages(request).sessions.seal(session)) > MAX_COOKIE_CHARS:
            # A browser silently drops a larger cookie: the person would be sent round in circles.
            log.warning("the identity provider's access token is too large for the session cookie")
            return _forget_pending(pages(request).error(
                request, 403, "認証基盤のトークンが大きすぎるため、サインインできません。システム管理者にお問い合わせください。",
                "The identity provider's access token is too large for the session cookie; ask the administrator "
                "to trim its claims."))
        # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect continuing the
        # provider's cross-site navigation would arrive without it.
        response = pages(request).render(request, "signed_in.html", None, next=pending.next or HOME[role])
        return _forget_pending(pages(request).sign_in(response, session))

    def _forget_pending(response: Response) -> Response:
        response.delete_cookie(OIDC_PENDING, path="/signin/oidc", httponly=True, samesite="lax")
        return response

    def _provider_unavailable(request: Request) -> Response:
        return pages(request).error(request, 503, "市の認証基盤に接続できません。しばらくしてからもう一度お試しください。",
                                    "The identity provider cannot be reached; try again shortly.")

    @router.post("/signin/partner")
    async def sign_in_partner(request: Request) -> Response:
        """A partner signs in with its id and API token; the console checks them by asking
        partner-notification for the partner's session token (which housing-support accepts)."""
        data = await _sign_in_form(request)
        if data is None:
            return _sign_in_page(request, error="フォームの有効期限が切れました。もう一度お試しください。",
                                 status_code=403)
        given_id, api_token = str(data.get("partner_id", "")).strip(), str(data.get("api_token", "")).strip()
        try:
            partner_id = str(UUID(given_id))
            exchanged = await apis(request).post("partners", f"/v1/partners/{partner_id}/session", api_token)
        except (ValueError, ApiRefused):
            return _sign_in_page(request, error="連携団体IDまたはAPIトークンが正しくありません。",
                                 status_code=401, partner_id=given_id[:64])
        session = pages(request).sessions.new(
            kind="partner", role="partner", subject=partner_id, display_name="連携団体", token=api_token,
            session_token=exchanged["access_token"],
            seconds=min(int(exchanged.get("expires_in", PARTNER_SESSION_SECONDS)), PARTNER_SESSION_SECONDS))
        return pages(request).sign_in(redirect(safe_next(str(data.get("next", ""))) or HOME["partner"]), session)

    @router.post("/signout")
    async def sign_out(request: Request) -> Response:
        session = pages(request).sessions.open(request.cookies.get(COOKIE))
        data = await request.form()
        if session is not None and data.get("csrf") != session.csrf:
            return pages(request).error(request, 403, "フォームの有効期限が切れました。")
        oidc = request.app.state.oidc
        if session is not None and session.via_provider and oidc is not None:
            # On a counter's shared computer the next person must not be signed in as this one by the
            # provider's own session.
            provider_sign_out = await oidc.end_session_url()
            if provider_sign_out:
                return pages(request).sign_out(RedirectResponse(provider_sign_out, status_code=303))
        return pages(request).sign_out(redirect("/signin", "サインアウトしました。"))

    @router.get("/ops")
    async def ops_home(request: Request, session=Depends(signed_in("ops"))) -> Response:
        services = {name: await apis(request).readiness(name, session.token)
                    for name in ("intake", "referral", "housing", "partners")}
        return pages(request).render(request, "ops.html", session, services=services)

    return router
