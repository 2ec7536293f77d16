"""Composition root of the web console: the one place its parts are wired together."""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_console.adapters.apis import Apis
from tsunagu_console.adapters.oidc import OidcProvider
from tsunagu_console.adapters.sessions import SessionCookies
from tsunagu_console.entrypoints import coordinator, council, counter, partner, web
from tsunagu_console.entrypoints.pages import Pages
from tsunagu_servicehost.limits import BodySizeLimit
from tsunagu_servicehost.metrics import HttpMetrics
from tsunagu_servicehost.settings import public_key_algorithms
from tsunagu_servicehost.tracing import install_request_tracing
from tsunagu_telemetry import tracer_provider
from tsunagu_telemetry.logs import configure_logging

HERE = Path(__file__).resolve().parent
log = logging.getLogger("tsunagu.console")


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_", extra="ignore")

    http_host: str = Field(default="127.0.0.1", description="Address the console binds to.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the console.")
    console_intake_url: str = Field(default="http://127.0.0.1:8001", description="intake's public API.")
    console_referral_url: str = Field(default="http://127.0.0.1:8002", description="referral's public API.")
    console_housing_url: str = Field(default="http://127.0.0.1:8003", description="housing-support's public API.")
    console_partners_url: str = Field(default="http://127.0.0.1:8004",
                                      description="partner-notification's public API.")
    console_session_keys: SecretStr = Field(default=SecretStr(""), description=(
        "Fernet keys sealing the session cookie, comma-separated, newest first (an older one still opens "
        "the cookies it sealed, so keys can be rotated without signing everyone out)."))
    console_secure_cookies: bool = Field(default=True, description=(
        "Mark the session cookie Secure (https only). Off only for loopback development."))
    console_session_hours: float = Field(default=8.0, gt=0, le=24, description="A staff session's length.")
    console_dev_staff_key: SecretStr = Field(default=SecretStr(""), description=(
        "Development only: the development issuer's Ed25519 key. When set, the sign-in page offers each "
        "staff role and the console signs that role's token itself; unset in production, where staff "
        "tokens come from the city's identity provider."))
    console_oidc_issuer: str = Field(default="", description=(
        "The city's OpenID Connect identity provider (its discovery document is at "
        "<issuer>/.well-known/openid-configuration). When set, staff sign in there; unset: no such sign-in."))
    console_oidc_client_id: str = Field(default="", description="The console's client id at the identity provider.")
    console_oidc_client_secret: SecretStr = Field(default=SecretStr(""), description=(
        "The console's client secret (client_secret_basic); empty for a public client, which PKCE protects."))
    console_oidc_redirect_url: str = Field(default="", description=(
        "The console's /signin/oidc/callback as registered at the identity provider (https://…)."))
    console_oidc_scopes: str = Field(default="openid", description="Scopes asked for (space-separated).")
    staff_issuer: str = Field(default="", description="Issuer (`iss`) of staff tokens.")
    staff_audience: str = Field(default="", description="Audience (`aud`) of staff tokens.")
    staff_role_claim: str = Field(default="tsunagu_role", description=(
        "Claim of the staff access token naming the role (as the services read it)."))
    staff_algorithms: list[str] = Field(default=["RS256", "ES256", "EdDSA"], description=(
        "Signature algorithms accepted on the identity provider's tokens (JSON list); never an HMAC one."))
    dev_staff_kid: str = Field(default="tsunagu-dev-1", description="Key id of the development issuer.")
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector base URL; unset: no export.")
    max_request_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest form the console reads.")
    api_timeout_s: float = Field(default=10.0, gt=0, description="Time one call to a service's API may take.")

    @field_validator("staff_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        return public_key_algorithms(value)


def build_app(settings: ConsoleSettings | None = None, transport: httpx.AsyncBaseTransport | None = None,
              oidc_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The console as an ASGI app; its HTTP clients are opened when the app starts. `transport`: for
    tests, the four services answered in-process; `oidc_transport`: the identity provider."""
    settings = settings or ConsoleSettings()
    registry = CollectorRegistry()
    provider = tracer_provider("console", settings.otlp_endpoint)
    apis = Apis({"intake": settings.console_intake_url, "referral": settings.console_referral_url,
                 "housing": settings.console_housing_url, "partners": settings.console_partners_url},
                timeout=settings.api_timeout_s, transport=transport)
    pages = Pages(HERE / "templates", SessionCookies(
        settings.console_session_keys.get_secret_value(), secure=settings.console_secure_cookies,
        hours=settings.console_session_hours))
    oidc = OidcProvider(
        issuer=settings.console_oidc_issuer, client_id=settings.console_oidc_client_id,
        client_secret=settings.console_oidc_client_secret.get_secret_value(),
        redirect_url=settings.console_oidc_redirect_url, scopes=settings.console_oidc_scopes,
        staff_issuer=settings.staff_issuer, staff_audience=settings.staff_audience,
        role_claim=settings.staff_role_claim, algorithms=list(settings.staff_algorithms),
        timeout=settings.api_timeout_s, transport=oidc_transport) if settings.console_oidc_issuer else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await apis.open()
        if oidc is not None:
            await oidc.open()
        log.info("console started")
        try:
            yield
        finally:
            await apis.close()
            if oidc is not None:
                await oidc.close()
            provider.shutdown()

    app = FastAPI(title="Tsunagu つなぐ (console)", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.apis, app.state.pages, app.state.settings, app.state.oidc = apis, pages, settings, oidc
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_request_body_bytes)
    install_request_tracing(app, provider, "console")
    app.add_middleware(HttpMetrics, registry=registry)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(web.build_router(registry, settings))
    for module in (counter, coordinator, partner, council):
        app.include_router(module.build_router())
    pages.install_error_pages(app)
    return app


def check_settings(settings: ConsoleSettings) -> None:
    try:
        SessionCookies(settings.console_session_keys.get_secret_value(), secure=True, hours=1)
    except ValueError as exc:
        raise SystemExit(f"[tsunagu] error: {exc}") from None
    if settings.console_oidc_issuer:
        missing = [name for name, value in (
            ("TSUNAGU_CONSOLE_OIDC_CLIENT_ID", settings.console_oidc_client_id),
            ("TSUNAGU_CONSOLE_OIDC_REDIRECT_URL", settings.console_oidc_redirect_url),
            ("TSUNAGU_STAFF_ISSUER", settings.staff_issuer), ("TSUNAGU_STAFF_AUDIENCE", settings.staff_audience))
            if not value]
        if missing:
            raise SystemExit(f"[tsunagu] error: TSUNAGU_CONSOLE_OIDC_ISSUER is set but {', '.join(missing)} is not")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["serve"]:
        sys.exit("usage: python -m tsunagu_console serve")
    configure_logging("console")
    settings = ConsoleSettings()
    check_settings(settings)
    uvicorn.run(build_app(settings), host=settings.http_host, port=settings.http_port, log_config=None,
                access_log=False, server_header=False)
