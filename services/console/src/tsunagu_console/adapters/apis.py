"""The four services' public APIs, called with the signed-in person's own token.

One HTTP client per service, opened when the console starts. A refusal comes back as `ApiRefused`
carrying the service's own Japanese message (every service answers errors as
`{"message_ja", "message_en", "errors"?}`), so a page can show it beside the form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry.propagate import inject

SERVICES = ("intake", "referral", "housing", "partners")


@dataclass
class ApiRefused(Exception):
    """A service answered 4xx: what it said, for the person who filled in the form."""

    status: int
    message_ja: str
    message_en: str = ""
    fields: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status}: {self.message_en or self.message_ja}"


class ApiUnavailable(Exception):
    """A service could not be reached or answered 5xx."""

    def __init__(self, service: str, detail: str):
        super().__init__(f"{service}: {detail}")
        self.service = service


def refusal(response: httpx.Response) -> ApiRefused:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiRefused(response.status_code, str(body.get("message_ja") or "要求を処理できませんでした。"),
                      str(body.get("message_en") or ""), list(body.get("errors") or []))


class Apis:
    def __init__(self, urls: dict[str, str], timeout: float, transport: httpx.AsyncBaseTransport | None = None):
        """`transport`: for tests, the services answered in-process (httpx.MockTransport)."""
        self._urls, self._timeout, self._transport = urls, timeout, transport
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def open(self) -> None:
        # trust_env=False: an environment proxy never sees a person's token or data.
        self._clients = {name: httpx.AsyncClient(base_url=url, timeout=self._timeout, trust_env=False,
                                                 transport=self._transport)
                         for name, url in self._urls.items()}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def call(self, service: str, method: str, path: str, token: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Any:
        """The decoded JSON answer; `ApiRefused` on 4xx, `ApiUnavailable` when the service is down."""
        headers = {"Authorization": f"Bearer {token}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        inject(headers)  # the page's trace continues into the service
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._clients[service].request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ApiUnavailable(service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise refusal(response)
        return response.json() if response.content else None

    async def get(self, service: str, path: str, token: str, **params: Any) -> Any:
        return await self.call(service, "GET", path, token, params=params)

    async def post(self, service: str, path: str, token: str, body: Any = None, *,
                   idempotency_key: str | None = None) -> Any:
        """`idempotency_key`: the form's own key, so a form sent twice (a double tap) is acted on once."""
        return await self.call(service, "POST", path, token, json=body if body is not None else {},
                               idempotency_key=idempotency_key)

    async def put(self, service: str, path: str, token: str, body: Any) -> Any:
        return await self.call(service, "PUT", path, token, json=body)

    async def readiness(self, service: str, token: str) -> dict:
        """A service's /readyz as the ops role sees it: its status and each dependency's state."""
        try:
            response = await self._clients[service].get("/readyz", headers={"Authorization": f"Bearer {token}"},
                                                         timeout=5)
            return response.json()
        except (httpx.HTTPError, ValueError):
            return {"status": "unreachable", "checks": {}}

    async def healthy(self) -> dict[str, str]:
        """Each service's /healthz: `ok`, or `unreachable`."""
        checks = {}
        for name, client in self._clients.items():
            try:
                checks[name] = "ok" if (await client.get("/healthz", timeout=2)).status_code == 200 else "unreachable"
            except httpx.HTTPError:
                checks[name] = "unreachable"
        return checks
