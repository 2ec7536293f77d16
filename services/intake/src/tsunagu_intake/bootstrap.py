"""Composition root of the intake service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_contracts.events.base import CheckedMunicipalityCode
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.entrypoints import http, kafka
from tsunagu_servicehost import Runtime, Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_INTAKE_", extra="ignore")

    pii_keys: SecretStr = Field(default=SecretStr(""), description="Fernet keys, comma-separated, newest first.")
    index_key: SecretStr = Field(default=SecretStr(""), description="Key of the duplicate-check blind index.")
    municipality_code: CheckedMunicipalityCode = Field(
        default="142166", description="The city whose counters this intake serves (座間市); its cases carry it.")


def cipher_from(settings: IntakeSettings) -> PersonalDataCipher:
    keys = [k for k in settings.pii_keys.get_secret_value().split(",") if k]
    return PersonalDataCipher(keys, settings.index_key.get_secret_value().encode())


def check_settings() -> None:
    """Refuse to serve without the personal-data keys."""
    try:
        cipher_from(IntakeSettings())
    except ValueError as exc:
        raise SystemExit(f"[tsunagu] error: {exc} (TSUNAGU_INTAKE_PII_KEYS, TSUNAGU_INTAKE_INDEX_KEY)") from None


def build_service() -> Service:
    def routers(runtime: Runtime):
        settings = IntakeSettings()
        return http.build_router(runtime, cipher=lambda: cipher_from(settings),
                                 municipality_code=settings.municipality_code)

    return Service(
        name="intake",
        title="Tsunagu 相談受付 (intake)",
        migrations=MIGRATIONS,
        http=routers,
        internal_http=lambda runtime: http.build_internal_router(runtime, cipher=lambda: cipher_from(IntakeSettings())),
        subscribe=kafka.subscribe,
        checks=(check_settings,),
    )
