"""Composition root of the referral service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_referral.adapters.gauges import GAUGES
from tsunagu_referral.entrypoints import http, kafka, rebuild, reports
from tsunagu_referral.entrypoints.timers import run_timers
from tsunagu_contracts.codes import NeedCategory
from tsunagu_referral.domain.model import Policy, default_follow_up_days
from tsunagu_servicehost import Runtime, Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class ReferralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_REFERRAL_", extra="ignore")

    accept_business_days: int = Field(default=3, ge=0, le=30, description="N: business days to accept a referral.")
    contact_days: int = Field(default=14, ge=1, le=365, description="M: days an open case may go without contact.")
    timer_interval_s: float = Field(default=30.0, gt=0, description="How often deadlines are checked.")
    follow_up_business_days: int | None = Field(default=None, ge=0, le=120, description=(
        "Business days from acceptance or completion to the follow-up, for every need; unset: per need, "
        "from domain/routes.json (follow_up_business_days)."))
    follow_up_answer_business_days: int = Field(default=5, ge=0, le=60, description=(
        "Business days a due follow-up waits for its answer before it is listed as overdue."))


def build_service() -> Service:
    settings = ReferralSettings()
    follow_up_days = (default_follow_up_days() if settings.follow_up_business_days is None
                      else dict.fromkeys(NeedCategory, settings.follow_up_business_days))
    policy = Policy(accept_business_days=settings.accept_business_days, contact_days=settings.contact_days,
                    follow_up_business_days=follow_up_days,
                    follow_up_answer_business_days=settings.follow_up_answer_business_days)

    async def timers(runtime: Runtime) -> None:
        await run_timers(runtime, interval=settings.timer_interval_s, contact_days=settings.contact_days)

    def routers(runtime: Runtime) -> list:
        return [*http.build_router(runtime, policy=policy), reports.build_router(runtime)]

    def subscribe(runtime: Runtime) -> None:
        kafka.subscribe(runtime, policy=policy)

    return Service(
        name="referral",
        title="Tsunagu つなぐシート (referral)",
        migrations=MIGRATIONS,
        http=routers,
        subscribe=subscribe,
        on_start=(timers,),
        gauges=GAUGES,
        commands={"rebuild-reports": rebuild.command},
    )
