"""While the database cannot be reached, a request is answered 503 with Retry-After, never a bare 500."""

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tsunagu_servicehost.errors import ErrorAnswer, InvalidRequest, Rejected, install_error_handlers

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
