"""While the database cannot be reached, a request is answered 503 with Retry-After, never a bare 500;
every error answer has one body, Japanese first, and each route's OpenAPI entry lists the ones it gives."""

from types import SimpleNamespace
from uuid import UUID

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from tsunagu_servicehost.auth import Role, TokenVerifier, require
from tsunagu_servicehost.errors import (
    CONFLICT, ERROR_ANSWERS, ErrorAnswer, InvalidRequest, Refused, Rejected, document_error_answers,
    install_error_handlers,
)
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_teststack.tokens import bearer_token, token_settings

UNAVAILABLE = {
    "connection refused": ConnectionRefusedError(111, "Connect call failed"),
    "pool timeout": TimeoutError(),
    "connection lost mid-transaction": asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"),
    "server shutting down": asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
}


async def post_to_a_route_that_raises(error: Exception) -> httpx.Response:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    async def store() -> None:
        raise error

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post("/things")


@pytest.mark.parametrize("error", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
async def test_an_unreachable_database_is_answered_503_with_retry_after_in_japanese_and_english(error):
    response = await post_to_a_route_that_raises(error)

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    body = ErrorAnswer.model_validate(response.json()).model_dump()  # the body the OpenAPI documents name
    assert "一時的に利用できません" in body["message_ja"] and "何も保存されていません" in body["message_ja"]
    assert "temporarily unavailable" in body["message_en"] and "nothing was stored" in body["message_en"]


async def test_a_bug_is_still_a_500_not_an_outage():
    response = await post_to_a_route_that_raises(KeyError("oops"))
    assert response.status_code == 500


async def test_a_handler_s_rejection_is_answered_with_its_status_in_japanese_and_english():
    conflict = await post_to_a_route_that_raises(Rejected.conflict("すでに撤回されています。", "already withdrawn"))
    invalid = await post_to_a_route_that_raises(Rejected.invalid("person_ref", "登録されていません。", "unknown"))

    assert conflict.status_code == 409 and conflict.json()["message_ja"] == "すでに撤回されています。"
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "person_ref"
    InvalidRequest.model_validate(invalid.json())


async def test_an_invalid_request_is_answered_with_the_documented_field_errors():
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things/{count}")
    async def store(count: int) -> None:
        raise AssertionError("never reached")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://service") as client:
        response = await client.post("/things/many")

    assert response.status_code == 422
    answer = InvalidRequest.model_validate(response.json())
    assert [(e.field, e.location) for e in answer.errors] == [("count", "path")]


class Note(BaseModel):
    text: str


def an_app_with_a_counter_route() -> FastAPI:
    """One route as the services write them: a role, an id in the path, a body, and a declared 409."""
    app = FastAPI()
    app.state.runtime = SimpleNamespace(tokens=TokenVerifier("intake", ServiceSettings(
        http_port=1, database_url="postgresql://unused@localhost/unused", **token_settings("intake"))))
    install_error_handlers(app)
    router = APIRouter()

    @router.post("/cases/{case_id}/notes", status_code=201, responses=CONFLICT,
                 dependencies=[Depends(require(Role.COUNTER))])
    async def add_note(case_id: UUID, note: Note) -> dict:
        return {"case_id": str(case_id)}

    @router.get("/chart")
    async def chart() -> dict:
        return {}

    app.include_router(document_error_answers(router), responses=ERROR_ANSWERS)
    return app


async def ask(app: FastAPI, method: str, url: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://service") as client:
        return await client.request(method, url, **kwargs)


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token(role)}"}


async def test_a_request_without_a_token_gets_the_same_error_body_as_every_other_refusal():
    response = await ask(an_app_with_a_counter_route(), "POST", f"/cases/{UUID(int=1)}/notes", json={"text": "x"})

    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert list(response.json()) == ["message_ja", "message_en"]
    assert response.json()["message_ja"] == "認証が必要です。"


async def test_a_refusal_for_want_of_a_token_says_which_scheme_to_use():
    response = await post_to_a_route_that_raises(Refused.unauthenticated("トークンが無効です。", "The token is invalid."))

    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"message_ja": "トークンが無効です。", "message_en": "The token is invalid."}


async def test_a_role_that_may_not_act_is_refused_403_with_the_error_body():
    response = await ask(an_app_with_a_counter_route(), "POST", f"/cases/{UUID(int=1)}/notes", json={"text": "x"},
                         headers=bearer(Role.COORDINATOR))

    assert response.status_code == 403
    assert ErrorAnswer.model_validate(response.json()).message_ja == "この操作を行う権限がありません。"


async def test_a_body_that_is_not_utf8_is_answered_400_in_japanese_and_english():
    response = await ask(an_app_with_a_counter_route(), "POST", f"/cases/{UUID(int=1)}/notes",
                         content=b'{"text": "\xff\xfe"}',
                         headers={**bearer(Role.COUNTER), "content-type": "application/json"})

    assert response.status_code == 400
    body = ErrorAnswer.model_validate(response.json())
    assert "読み取れません" in body.message_ja and "cannot be read" in body.message_en


async def test_an_unknown_url_is_answered_404_with_the_error_body():
    response = await ask(an_app_with_a_counter_route(), "GET", "/no-such-thing")

    assert response.status_code == 404
    assert ErrorAnswer.model_validate(response.json()).message_en == "Not found."


def test_each_route_documents_the_error_answers_its_signature_and_its_declaration_show():
    paths = an_app_with_a_counter_route().openapi()["paths"]
    note = paths["/cases/{case_id}/notes"]["post"]["responses"]
    chart = paths["/chart"]["get"]["responses"]

    assert paths["/cases/{case_id}/notes"]["post"]["x-tsunagu-roles"] == ["counter"]
    assert "x-tsunagu-roles" not in paths["/chart"]["get"]
    assert sorted(note) == ["201", "400", "401", "403", "404", "409", "413", "422", "503"]
    assert sorted(chart) == ["200", "413", "422", "503"], "no token, no body, no id: none of those answers"
    for status in ("400", "401", "403", "404", "409"):
        assert note[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
