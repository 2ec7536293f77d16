"""Error answers in Japanese and English: 422 with field-level messages, the domain's refusals,
and 503 while the database cannot be reached.

Handlers raise `Rejected` (no HTTP in it, so Kafka handlers and timers raise and catch it too);
`Refused.of` is the one mapping from a rejection to an HTTP status, applied to every service's
routes by `install_error_handlers`. Every error answer has one body, `ErrorAnswer` (message_ja
first), and `document_error_answers` lists in each route's OpenAPI entry the ones it can give.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import StrEnum
from uuid import UUID

import asyncpg
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tsunagu.servicehost")

_pg = asyncpg.exceptions

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,                                     # refused, reset, unreachable: the way to the database
    _pg.PostgresConnectionError,                 # SQLSTATE 08: the connection failed or was lost mid-statement
    _pg.InvalidAuthorizationSpecificationError,  # 28: the database refuses the service's login
    _pg.InsufficientResourcesError,              # 53: disk full, out of memory, too many connections
    _pg.AdminShutdownError,                      # 57P01: the server is shutting down
    _pg.CrashShutdownError,                      # 57P02: a server process crashed
    _pg.CannotConnectNowError,                   # 57P03: starting up or in recovery
    _pg.DatabaseDroppedError,                    # 57P04
    _pg.IdleSessionTimeoutError,                 # 57P05: the server closed an idle session
    _pg.ReadOnlySQLTransactionError,             # 25006: a standby, or a database switched to read-only
    _pg.PostgresSystemError,                     # 58: I/O errors outside PostgreSQL
)
"""The database, or the way to it, cannot do any work now; nothing is wrong with the request or the event.

Everything else is the work's own fault: a constraint violation, a bad value, a query cancelled by
its statement timeout (57014), a bug. A consumer keeps the record and pauses; an HTTP request is
answered 503 with Retry-After.
"""


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` by itself shows the database unavailable.

    Not a `TimeoutError` (an `OSError` too): it says only that no answer came in time, from a
    database that is gone or from a statement too slow for its record. A consumer asks the database
    whether it answers to tell which (consumer.py).
    """
    return isinstance(exc, INFRASTRUCTURE_ERRORS) and not isinstance(exc, TimeoutError)


RETRY_AFTER_S = 5

_JA = {
    "missing": "必須項目です。",
    "extra_forbidden": "この項目は受け付けられません。",
    "enum": "選択肢にない値です。",
    "literal_error": "選択肢にない値です。",
    "uuid_parsing": "ID の形式が正しくありません。",
    "uuid_type": "ID の形式が正しくありません。",
    "string_type": "文字列で入力してください。",
    "string_too_short": "短すぎます。",
    "string_too_long": "長すぎます。",
    "string_pattern_mismatch": "形式が正しくありません。",
    "int_parsing": "整数で入力してください。",
    "int_type": "整数で入力してください。",
    "bool_parsing": "true か false で入力してください。",
    "bool_type": "true か false で入力してください。",
    "date_from_datetime_parsing": "日付（YYYY-MM-DD）で入力してください。",
    "date_parsing": "日付（YYYY-MM-DD）で入力してください。",
    "date_type": "日付（YYYY-MM-DD）で入力してください。",
    "datetime_parsing": "日時（ISO 8601、タイムゾーン付き）で入力してください。",
    "timezone_aware": "タイムゾーン付きの日時で入力してください。",
    "too_short": "件数が足りません。",
    "too_long": "件数が多すぎます。",
    "greater_than_equal": "値が小さすぎます。",
    "less_than_equal": "値が大きすぎます。",
    "json_invalid": "JSON の形式が正しくありません。",
    "model_attributes_type": "オブジェクトで入力してください。",
    "dict_type": "オブジェクトで入力してください。",
    "list_type": "配列で入力してください。",
    "tuple_type": "配列で入力してください。",
    "value_error": "値が正しくありません。",
}


def field_errors(errors) -> list[dict]:
    out = []
    for error in errors:
        loc = [str(p) for p in error["loc"]]
        message_en = error["msg"]
        message_ja = _JA.get(error["type"], "入力内容が正しくありません。")
        if error["type"] == "value_error":
            # Our own validators speak English; keep their reason beside the Japanese summary.
            message_en = message_en.removeprefix("Value error, ")
        if error["type"] == "enum" and "expected" in error.get("ctx", {}):
            message_ja += f"（{error['ctx']['expected']}）"
        out.append({"field": ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path", "header"} else loc),
                    "location": loc[0] if loc else "body", "type": error["type"],
                    "message_ja": message_ja, "message_en": message_en})
    return out


class ErrorAnswer(BaseModel):
    """What a person reads when a request is refused or cannot be served: Japanese first."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "message_ja": "データベースが一時的に利用できません。何も保存されていません。しばらくしてから、もう一度お試しください。",
        "message_en": "The database is temporarily unavailable; nothing was stored. Please try again shortly."}]})

    message_ja: str
    message_en: str


class FieldError(BaseModel):
    field: str | None
    location: str
    type: str
    message_ja: str
    message_en: str


class InvalidRequest(ErrorAnswer):
    """422: nothing was stored; each field's fault in both languages."""

    errors: list[FieldError]


ERROR_ANSWERS: dict[int | str, dict] = {
    413: {"model": ErrorAnswer, "description": "The request body is larger than the service accepts "
                                               "(`TSUNAGU_MAX_REQUEST_BODY_BYTES`); nothing was read further "
                                               "and nothing was stored."},
    422: {"model": InvalidRequest, "description": "The request is invalid; nothing was stored."},
    503: {
        "model": ErrorAnswer,
        "description": "The database or a service this request needs is unavailable; nothing was stored. "
                       "Send the same request again after `Retry-After` seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait before sending the request again.",
                                    "schema": {"type": "integer"}}},
    },
}
"""The error bodies the handlers below send from any route, for each service's OpenAPI document."""

UNREADABLE = {400: {"model": ErrorAnswer, "description": "The body cannot be read as JSON text (not UTF-8, "
                                                         "or not JSON at all); nothing was stored."}}
UNAUTHENTICATED = {401: {"model": ErrorAnswer, "description": "No bearer token, or one that is invalid or expired.",
                         "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}}}
FORBIDDEN = {403: {"model": ErrorAnswer, "description": "The token's role or organisation may not do this; "
                                                        "nothing was stored."}}
NOT_FOUND = {404: {"model": ErrorAnswer, "description": "What the request names does not exist (or is not "
                                                        "visible to this token); nothing was stored."}}
CONFLICT = {409: {"model": ErrorAnswer, "description": "The request does not fit the current state (for example "
                                                       "a closed case, or a step already taken); nothing was "
                                                       "stored. The body may name what is allowed instead."}}
"""Answers a route declares for itself (`responses=CONFLICT`) when only its handler knows it can give them;
`document_error_answers` adds the others from what the route's signature shows."""

_STATUS_TEXT = {
    400: ("リクエストの本文を読み取れません（UTF-8 の JSON で送ってください）。何も保存されていません。",
          "The request body cannot be read; send UTF-8 JSON. Nothing was stored."),
    401: ("認証が必要です。", "A bearer token is required."),
    403: ("この操作を行う権限がありません。", "You may not do this."),
    404: ("指定されたURLは見つかりません。", "Not found."),
    405: ("このURLではこのメソッドは使えません。", "Method not allowed."),
}


def needs_token(check, roles: Iterable[str]):
    """Marks a FastAPI dependency that answers 401 without a valid token and 403 to one that may not act;
    `document_error_answers` lists both for every route that depends on it, and the roles it admits."""
    check.token_roles = tuple(roles)
    return check


def _token_roles(dependant: Dependant) -> set[str] | None:
    """The roles the route's token checks admit, or None when it checks no token."""
    found = None
    for sub in dependant.dependencies:
        for roles in (getattr(sub.call, "token_roles", None), _token_roles(sub)):
            if roles is not None:
                found = set(roles) if found is None else found & set(roles)
    return found


def _names_an_id(route: APIRoute) -> bool:
    return any(field.field_info.annotation is UUID for field in route.dependant.path_params)


def error_answers_of(route: APIRoute) -> dict[int, dict]:
    """The error answers a route can give, from what its signature shows: a body that may not parse (400),
    a token (401, 403), an id in its path that may name nothing (404)."""
    answers: dict[int, dict] = {}
    if route.body_field is not None:
        answers |= UNREADABLE
    if _token_roles(route.dependant) is not None:
        answers |= UNAUTHENTICATED | FORBIDDEN
    if _names_an_id(route):
        answers |= NOT_FOUND
    return answers


def document_error_answers(router: APIRouter) -> APIRouter:
    """Adds each route's error answers to what it declares itself, and the roles its token check admits as
    `x-tsunagu-roles`, before the router is included (which is when FastAPI builds the response models of
    the OpenAPI document)."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            route.responses = error_answers_of(route) | route.responses
            if (roles := _token_roles(route.dependant)) is not None:
                route.openapi_extra = {"x-tsunagu-roles": sorted(roles), **(route.openapi_extra or {})}
    return router


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # One body for every error answer: a detail of ours already is one; the framework's own (an
        # unreadable body, an unknown URL, a method the URL lacks) is given its words in both languages.
        if isinstance(exc.detail, dict) and "message_ja" in exc.detail:
            body = exc.detail
        else:
            message_ja, message_en = _STATUS_TEXT.get(exc.status_code, ("リクエストを処理できません。", str(exc.detail)))
            body = {"message_ja": message_ja, "message_en": message_en}
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "message_ja": "入力内容に誤りがあります。何も保存されていません。",
            "message_en": "The request is invalid; nothing was stored.",
            "errors": field_errors(exc.errors()),
        })

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=exc.headers)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        answer = Refused.of(exc)
        return JSONResponse(status_code=answer.status, content=answer.body())

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Each write is one transaction, and the server rolls back one whose connection failed before it
        # committed: nothing was stored, and the person may send the same request again.
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template: no ids in the log
        log.warning("%s %s answered 503: the database is unavailable (%s)", request.method, route,
                    type(exc).__name__)
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}, content={
            "message_ja": "データベースが一時的に利用できません。何も保存されていません。"
                          "しばらくしてから、もう一度お試しください。",
            "message_en": "The database is temporarily unavailable; nothing was stored. Please try again shortly.",
        })

    # A request with no answer in time is answered the same way: its transaction was rolled back, and
    # sending it again later is what the person should do, whichever side was slow.
    for error in (*INFRASTRUCTURE_ERRORS, TimeoutError):
        app.add_exception_handler(error, unavailable)


class Why(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"


class Rejected(Exception):
    """What the domain refuses to do, and why, in what a person reads: Japanese first, English beside it.

    Raised inside the unit of work, so nothing the work did is stored or published.
    """

    def __init__(self, why: Why, message_ja: str, message_en: str, *, field: str | None = None,
                 details: dict | None = None):
        super().__init__(message_en)
        self.why, self.message_ja, self.message_en, self.field, self.details = why, message_ja, message_en, field, details

    @classmethod
    def not_found(cls, what_ja: str, what_en: str) -> "Rejected":
        return cls(Why.NOT_FOUND, f"{what_ja}が見つかりません。", f"{what_en} not found.")

    @classmethod
    def conflict(cls, message_ja: str, message_en: str, **details) -> "Rejected":
        return cls(Why.CONFLICT, message_ja, message_en, details=details or None)

    @classmethod
    def forbidden(cls, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.FORBIDDEN, message_ja, message_en)

    @classmethod
    def invalid(cls, field: str, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.INVALID, message_ja, message_en, field=field)


STATUS = {Why.NOT_FOUND: 404, Why.CONFLICT: 409, Why.FORBIDDEN: 403, Why.INVALID: 422}
"""The HTTP status of each reason a handler rejects work for."""


class Refused(Exception):
    """A request the domain refuses, with what a person reads: Japanese first, English beside it.

    Raised inside the transaction, so nothing the request did is stored or published.
    """

    def __init__(self, status: int, message_ja: str, message_en: str, field: str | None = None,
                 details: dict | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(message_en)
        self.status, self.message_ja, self.message_en, self.field = status, message_ja, message_en, field
        self.details = details or {}
        self.headers = headers

    @classmethod
    def of(cls, rejected: Rejected) -> "Refused":
        return cls(STATUS[rejected.why], rejected.message_ja, rejected.message_en, rejected.field, rejected.details)

    @classmethod
    def invalid(cls, field: str, message_ja: str, message_en: str) -> "Refused":
        return cls(422, message_ja, message_en, field)

    @classmethod
    def unauthenticated(cls, message_ja: str, message_en: str) -> "Refused":
        return cls(401, message_ja, message_en, headers={"WWW-Authenticate": "Bearer"})

    @classmethod
    def not_found(cls, what_ja: str, what_en: str) -> "Refused":
        return cls(404, f"{what_ja}が見つかりません。", f"{what_en} not found.")

    @classmethod
    def conflict(cls, message_ja: str, message_en: str) -> "Refused":
        return cls(409, message_ja, message_en)

    def body(self) -> dict:
        body = {"message_ja": self.message_ja, "message_en": self.message_en, **self.details}
        if self.status == 422:
            body["message_ja"] = "入力内容に誤りがあります。何も保存されていません。"
            body["message_en"] = "The request is invalid; nothing was stored."
            body["errors"] = [{"field": self.field, "location": "body", "type": "refused",
                               "message_ja": self.message_ja, "message_en": self.message_en}]
        return body
