"""A small OpenID Connect identity provider for tests and development: authorization code flow with PKCE.

- `/.well-known/openid-configuration`, `/jwks`;
- `/authorize` shows a sign-in form (a staff id and a role) and, when it is sent, redirects back to
  the client with a one-time code;
- `/token` exchanges the code once, for the client it was issued to, with the same redirect URI and
  the PKCE verifier whose S256 challenge came with the authorization request.

The ID token's issuer is the provider's URL; the access token is a staff token as the services under
test accept it (the test session's staff key, STAFF_ISSUER, STAFF_AUDIENCE, the role claim). Both are
signed with the session's staff key, whose JWKS is served at /jwks.

A test can make the next tokens wrong on purpose: `provider.id_token_changes` and
`provider.access_token_changes` are merged into the claims (a value of None removes the claim).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tsunagu_servicehost.auth import jwks_of, private_key
from tsunagu_teststack.tokens import STAFF_AUDIENCE, STAFF_ISSUER, STAFF_KID, staff_key

CLIENT_ID = "tsunagu-console"
CLIENT_SECRET = "test-client-secret"
ROLE_CLAIM = "tsunagu_role"
_ROLES = {"counter": "相談窓口", "coordinator": "自立相談支援（コーディネーター）", "council": "居住支援協議会",
          "ops": "運用担当", "partner": "（職員の役割ではない: partner）", "": "（役割なし）"}


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    subject: str
    role: str


@dataclass
class TestIdentityProvider:
    """The provider as an ASGI app (`app`), for a URL (`issuer`) it is served at."""

    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    access_issuer: str = STAFF_ISSUER
    access_audience: str = STAFF_AUDIENCE
    ttl_seconds: int = 3600
    id_token_changes: dict = field(default_factory=dict)
    access_token_changes: dict = field(default_factory=dict)
    signing_key: str = ""
    """A private key to sign with instead of the session's staff key (the kid stays the same)."""
    grants: dict[str, _Grant] = field(default_factory=dict)
    issued: list[dict] = field(default_factory=list)
    """Every token response, in order."""
    signed_out: int = 0

    __test__ = False  # not a pytest test class

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/logout", self.logout),
        ])

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "end_session_endpoint": f"{self.issuer}/logout"})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(jwks_of(staff_key(), STAFF_KID))

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params) if request.method == "GET" else dict(await request.form())
        if (params.get("client_id") != self.client_id or params.get("response_type") != "code"
                or params.get("code_challenge_method") != "S256" or not params.get("code_challenge")
                or not params.get("redirect_uri")):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if request.method == "GET":
            return HTMLResponse(self._form(params))
        code = secrets.token_urlsafe(24)
        self.grants[code] = _Grant(client_id=params["client_id"], redirect_uri=params["redirect_uri"],
                                   code_challenge=params["code_challenge"], nonce=params.get("nonce", ""),
                                   subject=params.get("subject") or "staff-1", role=params.get("role", ""))
        query = urlencode({"code": code, **({"state": params["state"]} if "state" in params else {})})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    async def logout(self, request: Request) -> Response:
        """RP-Initiated Logout: back to where the client asked (this provider keeps no session to end)."""
        self.signed_out += 1
        back = request.query_params.get("post_logout_redirect_uri", "")
        if request.query_params.get("client_id") != self.client_id or not back.startswith(("http://", "https://")):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return RedirectResponse(back, status_code=302)

    def _form(self, params: dict) -> str:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items() if k not in ("role", "subject"))
        options = "".join(f'<option value="{code}">{html.escape(text)}</option>' for code, text in _ROLES.items())
        return f"""<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>テスト用認証基盤</title></head>
<body><main><h1>テスト用認証基盤</h1><form method="post" action="/authorize">{hidden}
<label for="subject">職員ID</label><input id="subject" name="subject" value="staff-1">
<label for="role">役割</label><select id="role" name="role">{options}</select>
<button type="submit">サインイン</button></form></main></body></html>"""

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        client_id, secret = _client_credentials(request, form)
        if client_id != self.client_id or secret != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(str(form.get("code", "")), None)  # a code is used once, whatever happens
        verifier = str(form.get("code_verifier", ""))
        if (form.get("grant_type") != "authorization_code" or grant is None or grant.client_id != client_id
                or grant.redirect_uri != form.get("redirect_uri") or _s256(verifier) != grant.code_challenge):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        id_claims = {"iss": self.issuer, "aud": self.client_id, "sub": grant.subject, "iat": now,
                     "exp": now + self.ttl_seconds, "nonce": grant.nonce}
        access_claims = {"iss": self.access_issuer, "aud": self.access_audience, "sub": grant.subject, "iat": now,
                         "exp": now + self.ttl_seconds, **({ROLE_CLAIM: grant.role} if grant.role else {})}
        key = self.signing_key or staff_key()
        tokens = {"access_token": _sign(access_claims, self.access_token_changes, key), "token_type": "Bearer",
                  "expires_in": self.ttl_seconds, "id_token": _sign(id_claims, self.id_token_changes, key),
                  "scope": "openid"}
        self.issued.append(tokens)
        return JSONResponse(tokens)


def _client_credentials(request: Request, form: dict) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return "", ""
        return client_id, secret
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _sign(claims: dict, changes: dict, key: str) -> str:
    merged = {k: v for k, v in {**claims, **changes}.items() if v is not None}
    return jwt.encode(merged, private_key(key), algorithm="EdDSA", headers={"kid": STAFF_KID})


class IdentityProviderServer:
    """The test provider served by uvicorn on a free loopback port: `async with IdentityProviderServer() as idp`.

    Its URL names the host `localhost` while the console is at 127.0.0.1: to a browser they are two
    sites, as a city's provider and console are, so cookies meet the same SameSite rules as there."""

    def __init__(self, host_name: str = "localhost"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.provider = TestIdentityProvider(issuer=f"http://{host_name}:{self.port}")
        self.server = uvicorn.Server(uvicorn.Config(self.provider.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.task: asyncio.Task | None = None

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    def console_env(self) -> dict[str, str]:
        """What the console reads to let staff sign in here (ConsoleProcess adds its own redirect URL)."""
        return {"TSUNAGU_CONSOLE_OIDC_ISSUER": self.issuer, "TSUNAGU_CONSOLE_OIDC_CLIENT_ID": self.provider.client_id,
                "TSUNAGU_CONSOLE_OIDC_CLIENT_SECRET": self.provider.client_secret}

    async def __aenter__(self) -> IdentityProviderServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
