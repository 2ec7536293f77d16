"""Composition root of the partner-notification service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_partners.entrypoints import http, kafka
from tsunagu_partners.handlers.sweep import HeldSweeper
from tsunagu_partners.handlers.webhooks import DeliveryPolicy, WebhookSender
from tsunagu_servicehost import Runtime, Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class PartnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_PARTNERS_", extra="ignore")

    secret_keys: SecretStr = Field(default=SecretStr(""), description="Fernet keys for webhook secrets, newest first.")
    max_attempts: int = Field(default=8, ge=1, le=30)
    first_retry_s: float = Field(default=5.0, gt=0)
    max_retry_s: float = Field(default=3600.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="How long one webhook request may take.")
    per_partner_in_flight: int = Field(default=4, ge=1)
    intake_url: str = Field(default="http://127.0.0.1:8001", description="Where partners' detail fetches are read.")
    intake_timeout_s: float = Field(default=10.0, gt=0, description="How long a detail fetch waits for intake.")
    held_sweep_s: float = Field(default=5.0, gt=0, description="How often held events now allowed are released.")


def cipher_from(settings: PartnerSettings) -> MultiFernet:
    keys = [k for k in settings.secret_keys.get_secret_value().split(",") if k]
    if not keys:
        raise ValueError("TSUNAGU_PARTNERS_SECRET_KEYS is not set")
    return MultiFernet([Fernet(k) for k in keys])


def check_settings() -> None:
    try:
        cipher_from(PartnerSettings())
    except ValueError as exc:
        raise SystemExit(f"[tsunagu] error: {exc}") from None


def build_service() -> Service:
    settings = PartnerSettings()
    policy = DeliveryPolicy(max_attempts=settings.max_attempts, first_retry_s=settings.first_retry_s,
                            max_retry_s=settings.max_retry_s, timeout_s=settings.timeout_s,
                            per_partner=settings.per_partner_in_flight)

    def routers(runtime: Runtime):
        return http.build_router(runtime, cipher=_LazyCipher(settings), intake_url=settings.intake_url,
                                 intake_timeout_s=settings.intake_timeout_s)

    async def webhooks(runtime: Runtime) -> None:
        await WebhookSender(runtime.db, cipher_from(settings), policy).run()

    async def held_events(runtime: Runtime) -> None:
        await HeldSweeper(runtime.db, runtime.registry, interval_s=settings.held_sweep_s).run()

    return Service(
        name="partner-notification",
        title="Tsunagu 連携団体通知 (partner notification)",
        migrations=MIGRATIONS,
        http=routers,
        subscribe=kafka.subscribe,
        on_start=(webhooks, held_events),
        checks=(check_settings,),
    )


class _LazyCipher:
    """Builds the cipher on first use, so the OpenAPI document can be generated without keys."""

    def __init__(self, settings: PartnerSettings):
        self._settings, self._cipher = settings, None

    def __getattr__(self, name: str):
        if self._cipher is None:
            self._cipher = cipher_from(self._settings)
        return getattr(self._cipher, name)
