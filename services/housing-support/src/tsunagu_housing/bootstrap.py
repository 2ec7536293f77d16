"""Composition root of the housing-support service: the one place its parts are wired together."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_housing.adapters.gauges import GAUGES
from tsunagu_housing.adapters.sealing import Sealer
from tsunagu_housing.entrypoints import http, kafka
from tsunagu_housing.entrypoints.timers import run_timers
from tsunagu_servicehost import Runtime, Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class HousingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_HOUSING_", extra="ignore")

    pii_keys: SecretStr = Field(default=SecretStr(""), description="Fernet keys for homes and reasons, newest first.")
    timer_interval_s: float = Field(default=15.0, gt=0, le=60, description="How often missed check-ins are looked for.")
    default_check_in_days: int = Field(default=14, ge=1, le=92, description=(
        "A tenancy moved into without a schedule of its own gets a visit every this many days."))


def check_settings() -> None:
    """Refuse to serve without the key that seals homes and reasons."""
    try:
        Sealer.from_setting(HousingSettings().pii_keys.get_secret_value())
    except ValueError as exc:
        raise SystemExit(f"[tsunagu] error: {exc}") from None


def build_service() -> Service:
    settings = HousingSettings()

    @cache
    def sealer() -> Sealer:
        return Sealer.from_setting(settings.pii_keys.get_secret_value())

    async def timers(runtime: Runtime) -> None:
        await run_timers(runtime, interval=settings.timer_interval_s)

    return Service(
        name="housing-support",
        title="Tsunagu 居住支援 (housing support)",
        migrations=MIGRATIONS,
        http=partial(http.build_router, sealer=sealer, default_every_days=settings.default_check_in_days),
        subscribe=kafka.subscribe,
        on_start=(timers,),
        gauges=GAUGES,
        checks=(check_settings,),
    )
