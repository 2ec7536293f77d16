"""Fast tests of the console's pages: the app in-process, the four services answered by a fake."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from tsunagu_console.bootstrap import ConsoleSettings, build_app
from tsunagu_servicehost.auth import new_signing_key

Answer = Callable[[httpx.Request], httpx.Response]


class FakeServices:
    """The four services' APIs as the console sees them: `fake.on("POST", "/v1/...", answer)`, where
    `answer` is a function of the request or a (status, json) pair; every request is kept."""

    def __init__(self):
        self.routes: dict[tuple[str, str], Answer] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, answer: Answer | tuple[int, object]) -> None:
        if isinstance(answer, tuple):
            status, body = answer
            answer = lambda request: httpx.Response(status, json=body)  # noqa: E731
        self.routes[(method, path)] = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"message_ja": "見つかりません。", "message_en": "Not found."})
        return answer(request)

    def sent(self, method: str, path: str) -> list[dict]:
        return [json.loads(r.content or b"null") for r in self.requests
                if r.method == method and r.url.path == path]


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def console(services) -> TestClient:
    settings = ConsoleSettings(console_session_keys=Fernet.generate_key().decode(), console_secure_cookies=False,
                               console_dev_staff_key=new_signing_key()[0], staff_issuer="tsunagu-test",
                               staff_audience="tsunagu")
    with TestClient(build_app(settings, transport=httpx.MockTransport(services.handle)),
                    base_url="http://127.0.0.1") as client:
        yield client


def csrf_in(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
def sign_in(console) -> Callable[[str], str]:
    """`csrf = sign_in("counter")`: the console client signed in as a staff role through the sign-in
    page; the session's CSRF token, for the forms the test posts."""

    def as_role(role: str) -> str:
        console.post("/signin/staff", data={"csrf": csrf_in(console.get("/signin").text), "role": role})
        return csrf_in(console.get("/").text)  # every signed-in page has the sign-out form

    return as_role


@pytest.fixture
def csrf_of() -> Callable[[str], str]:
    """The CSRF token in a page's forms."""
    return csrf_in
