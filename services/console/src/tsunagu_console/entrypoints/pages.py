"""Rendering pages, who may see them, and the forms they send.

Every page handler takes the signed-in `Session` from `signed_in(...)`, reads what it shows from the
services with `apis(request)` and the session's token, and answers `pages(request).render(...)`.
A form handler reads its fields with `await form(request, session)`, which refuses a form without
the session's CSRF token, and answers with `redirect(...)` after a success (post/redirect/get).
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from tsunagu_console.adapters.apis import ApiRefused, Apis, ApiUnavailable
from tsunagu_console.adapters.sessions import COOKIE, Session, SessionCookies
from tsunagu_console.domain import labels

log = logging.getLogger("tsunagu.console")
FLASH = "tsunagu_flash"

# What each role finds in the navigation: (path, label). Pages of a role live under its prefix.
NAV: dict[str, list[tuple[str, str]]] = {
    "counter": [("/counter/consultations/new", "相談を受け付ける"), ("/counter/follow-ups", "フォローアップ")],
    "coordinator": [("/coordinator/referrals", "紹介の一覧"), ("/counter/consultations/new", "相談を受け付ける"),
                    ("/coordinator/routing", "振り分け表"), ("/coordinator/partners", "連携団体"),
                    ("/coordinator/reports", "集計")],
    "partner": [("/partner/inbox", "受け取った紹介"), ("/partner/deliveries", "配信記録")],
    "council": [("/council/supports", "居住支援"), ("/council/check-ins", "見守り"),
                ("/council/overview", "協議会への報告"), ("/council/members", "構成員")],
    "ops": [("/ops", "稼働状況")],
}
HOME = {role: items[0][0] for role, items in NAV.items()}


class NotSignedIn(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


class NotAllowed(Exception):
    """Signed in, but this page is for another role."""


class FormRefused(Exception):
    """A form without the session's CSRF token (or with another session's)."""


def apis(request: Request) -> Apis:
    return request.app.state.apis


def pages(request: Request) -> "Pages":
    return request.app.state.pages


def signed_in(*roles: str):
    """A dependency: the signed-in session, when its role is one of `roles` (any role when none)."""

    async def dependency(request: Request) -> Session:
        session = pages(request).sessions.open(request.cookies.get(COOKIE))
        if session is None:
            raise NotSignedIn(request.url.path)
        if roles and session.role not in roles:
            raise NotAllowed()
        return session

    return dependency


async def form(request: Request, session: Session) -> FormData:
    """The posted form, once its CSRF token is the session's."""
    data = await request.form()
    if data.get("csrf") != session.csrf:
        raise FormRefused()
    return data


def redirect(path: str, flash: str = "") -> RedirectResponse:
    """303 to a page of the console (never elsewhere), with a one-time message shown at its top."""
    if urlsplit(path).netloc or not path.startswith("/") or path.startswith("//"):
        path = "/"
    response = RedirectResponse(path, status_code=303)
    if flash:
        response.set_cookie(FLASH, quote(flash), max_age=60, httponly=True, samesite="strict", path="/")
    return response


def path_id(value: str) -> str:
    """An id from a page's path, only when it is a UUID (it goes into an API path): anything else is no
    page of ours, answered with the 404 page."""
    try:
        return str(UUID(value))
    except ValueError:
        raise StarletteHTTPException(404) from None


def safe_next(path: str | None) -> str:
    """A `next` parameter, only when it is a path of the console."""
    if not path or not path.startswith("/") or path.startswith("//") or urlsplit(path).netloc:
        return ""
    return path


class Pages:
    def __init__(self, templates: Path, sessions: SessionCookies):
        self.sessions = sessions
        self.templates = Jinja2Templates(directory=templates)
        env = self.templates.env
        # request_key: a new Idempotency-Key for each form rendered, so a double tap is sent once.
        env.globals.update(label=labels.label, options=labels.options, nav=NAV, today=labels.today,
                           request_key=lambda: secrets.token_urlsafe(18))
        env.filters.update(wareki=labels.wareki, jdate=labels.japanese_date, jtime=labels.japanese_time)

    def render(self, request: Request, template: str, session: Session | None, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        flash = unquote(request.cookies.get(FLASH, ""))
        response = self.templates.TemplateResponse(request, template, {
            "session": session, "csrf": session.csrf if session else "", "flash": flash, **context},
            status_code=status_code)
        if flash:
            response.delete_cookie(FLASH, path="/")
        # Pages hold personal data: never kept by a browser cache or a proxy.
        response.headers["Cache-Control"] = "no-store"
        return response

    def sign_in(self, response: Response, session: Session) -> Response:
        response.set_cookie(COOKIE, self.sessions.seal(session), max_age=max(0, session.expires - int(time.time())),
                            httponly=True, samesite="strict", secure=self.sessions.secure, path="/")
        return response

    def sign_out(self, response: Response) -> Response:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.sessions.secure)
        return response

    def install_error_pages(self, app: FastAPI) -> None:
        async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
            return redirect(f"/signin?next={quote(exc.next_path)}")

        async def not_allowed(request: Request, exc: NotAllowed) -> Response:
            return self.error(request, 403, "このページを見る権限がありません。", "This page is for another role.")

        async def form_refused(request: Request, exc: FormRefused) -> Response:
            return self.error(request, 403, "フォームの有効期限が切れました。ページを開き直してください。",
                              "The form has expired; open the page again.")

        async def refused(request: Request, exc: ApiRefused) -> Response:
            if exc.status == 401:
                return self.sign_out(redirect(f"/signin?next={quote(request.url.path)}",
                                              "サインインの有効期限が切れました。"))
            return self.error(request, exc.status, exc.message_ja, exc.message_en)

        async def unavailable(request: Request, exc: ApiUnavailable) -> Response:
            log.warning("a service is unavailable: %s", exc)
            return self.error(request, 503, "システムに接続できません。しばらくしてからもう一度お試しください。",
                              "A service is unavailable; try again shortly.")

        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            if exc.status_code == 404:
                return self.error(request, 404, "ページが見つかりません。", "Not found.")
            if exc.status_code == 413:
                return self.error(request, 413, "送信された内容が大きすぎます。", "The form is too large.")
            return self.error(request, exc.status_code, "要求を処理できませんでした。", str(exc.detail))

        app.add_exception_handler(NotSignedIn, not_signed_in)
        app.add_exception_handler(NotAllowed, not_allowed)
        app.add_exception_handler(FormRefused, form_refused)
        app.add_exception_handler(ApiRefused, refused)
        app.add_exception_handler(ApiUnavailable, unavailable)
        app.add_exception_handler(StarletteHTTPException, http_error)

    def error(self, request: Request, status: int, message_ja: str, message_en: str = "") -> HTMLResponse:
        session = self.sessions.open(request.cookies.get(COOKIE))
        return self.render(request, "error.html", session, status_code=status, message_ja=message_ja,
                           message_en=message_en, status=status)
