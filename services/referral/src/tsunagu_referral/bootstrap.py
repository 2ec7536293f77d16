"""Composition root of the referral service: the one place its parts are wired together."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_referral.adapters.gauges import GAUGES
from tsunagu_referral.entrypoints import http, kafka
from tsunagu_referral.entrypoints.timers import run_timers
from tsunagu_referral.domain.model import Policy
from tsunagu_servicehost import Runtime, Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class ReferralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_REFERRAL_", extra="ignore")

    accept_business_days: int = Field(default=3, ge=0, le=30, description="N: business days to accept a referral.")
    contact_days: int = Field(default=14, ge=1, le=365, description="M: days an open case may go without contact.")
    timer_interval_s: float = Field(default=30.0, gt=0, description="How often deadlines are checked.")


def build_service() -> Service:
    settings = ReferralSettings()
    policy = Policy(accept_business_days=settings.accept_business_days, contact_days=settings.contact_days)

    async def timers(runtime: Runtime) -> None:
        await run_timers(runtime, interval=settings.timer_interval_s, contact_days=settings.contact_days)

    return Service(
        name="referral",
        title="Tsunagu つなぐシート (referral)",
        migrations=MIGRATIONS,
        http=partial(http.build_router, policy=policy),
        subscribe=partial(kafka.subscribe, policy=policy),
        on_start=(timers,),
        gauges=GAUGES,
    )
