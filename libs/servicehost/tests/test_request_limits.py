"""A request body over the limit is answered 413, in Japanese and English, before any route or
parser reads it: with a Content-Length that says so, and with a chunked body that has none."""

import httpx
from fastapi import FastAPI, Request

from tsunagu_servicehost.errors import ERROR_ANSWERS, ErrorAnswer, install_error_handlers
from tsunagu_servicehost.limits import BodySizeLimit
from tsunagu_servicehost.settings import ServiceSettings

LIMIT = 4096


def an_app_that_records_what_reached_it() -> tuple[FastAPI, list[bytes]]:
    reached: list[bytes] = []
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=LIMIT)

    @app.post("/things", status_code=201)
    async def store(request: Request) -> dict:
        reached.append(await request.body())
        return {"stored": len(reached[-1])}

    return app, reached


async def post(app: FastAPI, content) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://service") as client:
        return await client.post("/things", content=content, headers={"content-type": "application/json"})


async def chunks(total: int, size: int = 1000):
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


async def test_a_body_over_the_limit_is_refused_413_in_japanese_first_and_never_reaches_the_route():
    app, reached = an_app_that_records_what_reached_it()

    response = await post(app, b"x" * (LIMIT + 1))

    assert response.status_code == 413
    assert list(response.json()) == ["message_ja", "message_en"]
    ErrorAnswer.model_validate(response.json())
    assert "大きすぎます" in response.json()["message_ja"] and "何も保存されていません" in response.json()["message_ja"]
    assert "nothing was stored" in response.json()["message_en"]
    assert reached == []


async def test_a_chunked_body_without_content_length_is_refused_once_it_passes_the_limit():
    app, reached = an_app_that_records_what_reached_it()

    response = await post(app, chunks(LIMIT * 50))

    assert response.status_code == 413
    assert reached == []


async def test_a_body_within_the_limit_reaches_the_route_whole_also_when_chunked():
    app, reached = an_app_that_records_what_reached_it()

    plain = await post(app, b"y" * LIMIT)
    chunked = await post(app, chunks(LIMIT))

    assert plain.status_code == chunked.status_code == 201
    assert reached == [b"y" * LIMIT, b"x" * LIMIT]


async def test_a_content_length_that_is_not_a_number_is_refused_too():
    app, reached = an_app_that_records_what_reached_it()
    scope = {"type": "http", "method": "POST", "path": "/things", "headers": [(b"content-length", b"-1")]}
    sent: list[dict] = []

    async def receive():
        raise AssertionError("the body is not read")

    async def send(message):
        sent.append(message)

    await BodySizeLimit(app, LIMIT)(scope, receive, send)

    assert sent[0]["status"] == 413 and reached == []


def test_the_limit_is_a_setting_of_256_kib_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("TSUNAGU_MAX_REQUEST_BODY_BYTES", "65536")

    assert ServiceSettings.model_fields["max_request_body_bytes"].default == 256 * 1024
    assert ServiceSettings(http_port=1, database_url="postgresql://x@y/z").max_request_body_bytes == 65536


def test_413_is_one_of_the_error_answers_every_operation_documents():
    assert ERROR_ANSWERS[413]["model"] is ErrorAnswer
