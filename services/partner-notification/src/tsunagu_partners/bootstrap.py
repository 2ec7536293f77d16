"""Composition root of the partner-notification service: the one place its parts are wired together."""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Annotated

from cryptography.fernet import Fernet, MultiFernet
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsunagu_partners.adapters.gauges import GAUGES
from tsunagu_partners.adapters.repository import unit_of_work
from tsunagu_partners.adapters.webhook_transport import Resolve, parse_static_hosts, static_then_system, system_resolve
from tsunagu_partners.domain.webhook_urls import STACK_PORTS, WebhookUrlRules
from tsunagu_partners.domain.webhooks import RETRY_SCHEDULE_S
from tsunagu_partners.entrypoints import http, kafka
from tsunagu_partners.adapters.kafka_access import BrokerPartnerAccess
from tsunagu_partners.handlers.registry import PartnerKafkaAccess
from tsunagu_partners.handlers.mail import MailMetrics, MailSender, SmtpServer
from tsunagu_partners.handlers.sweep import HeldSweeper
from tsunagu_partners.handlers.webhooks import (
    DeliveryPolicy, WebhookMetrics, WebhookSender, check_lease, quiet_http_client_logs,
)
from tsunagu_servicehost import Runtime, Service

log = logging.getLogger("tsunagu.partners")
MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


class PartnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_PARTNERS_", extra="ignore")

    secret_keys: SecretStr = Field(default=SecretStr(""), description="Fernet keys for webhook secrets, newest first.")
    retry_schedule_s: list[Annotated[float, Field(gt=0)]] = Field(
        default=list(RETRY_SCHEDULE_S), min_length=1, max_length=30,
        description="The wait after each failed attempt, in seconds (a JSON list); attempts = waits + 1.")
    retry_scale: float = Field(default=1.0, gt=0, le=1, description="Shrinks every wait, for tests and drills.")
    timeout_s: float = Field(default=10.0, gt=0, description="The deadline of one whole webhook request.")
    lease_s: float = Field(default=30.0, gt=0, description="How long a claimed delivery stays one sender's; "
                           "longer than timeout_s, so a slow send is never sent again while it runs.")
    per_partner_in_flight: int = Field(default=4, ge=1)
    intake_url: str = Field(default="http://127.0.0.1:8001", description="Where partners' detail fetches are read.")
    intake_timeout_s: float = Field(default=10.0, gt=0, description="How long a detail fetch waits for intake.")
    held_sweep_s: float = Field(default=5.0, gt=0, description="How often held events now allowed are released.")
    credential_overlap_s: float = Field(default=24 * 3600, ge=0, description="How long a rotated API token or "
                                        "webhook secret keeps working beside its replacement.")
    allow_loopback_webhooks: bool = Field(default=False, description="Development and tests only: webhooks may go "
                                          "to the loopback (127.0.0.0/8, ::1, localhost), over http too.")
    refused_webhook_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default=sorted(STACK_PORTS), description="Ports no webhook may use, on any host: the stack's own (a JSON list).")
    public_url: str = Field(default="http://127.0.0.1:8004", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="This service's public base URL, as "
                            "partners reach it: webhooks link a referral's details there (`detailsurl`).")
    smtp_host: str = Field(default="", description="The SMTP server mail notices go through (partners without "
                           "a webhook); empty: notices are queued and shown in the delivery log, not sent.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = Field(default=None, description="Set with smtp_password, or neither.")
    smtp_password: SecretStr | None = Field(default=None, description="A secret: from the environment or a "
                                            "secrets file, never a command line.")
    smtp_starttls: bool = Field(default=True, description="Require STARTTLS; false only for a loopback sink.")
    mail_from: str = Field(default="tsunagu-noreply@localhost", max_length=200, pattern=r"^[^@\s]+@[^@\s]+$",
                           description="The From address of mail notices.")
    console_url: str = Field(default="http://127.0.0.1:8000", description="The web console mail notices link to.")
    static_hosts: str = Field(default="", description="A JSON object of host name to addresses that webhooks "
                              "resolve before DNS (drills and tests); the addresses are checked like any others.")

    def url_rules(self) -> WebhookUrlRules:
        return WebhookUrlRules(allow_loopback=self.allow_loopback_webhooks,
                               refused_ports=frozenset(self.refused_webhook_ports))

    def resolver(self) -> Resolve:
        hosts = parse_static_hosts(self.static_hosts)
        return static_then_system(hosts) if hosts else system_resolve

    @model_validator(mode="after")
    def _a_send_ends_before_its_lease(self) -> "PartnerSettings":
        check_lease(self.timeout_s, self.lease_s)
        return self

    @model_validator(mode="after")
    def _smtp_credentials_go_together(self) -> "PartnerSettings":
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("set TSUNAGU_PARTNERS_SMTP_USERNAME and TSUNAGU_PARTNERS_SMTP_PASSWORD together, or neither")
        return self

    def smtp_server(self) -> SmtpServer:
        return SmtpServer(host=self.smtp_host, port=self.smtp_port, username=self.smtp_username,
                          password=self.smtp_password.get_secret_value() if self.smtp_password else None,
                          starttls=self.smtp_starttls, sender=self.mail_from, console_url=self.console_url)

    def delivery_policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(retry_schedule=tuple(w * self.retry_scale for w in self.retry_schedule_s),
                              timeout_s=self.timeout_s, lease_s=self.lease_s, per_partner=self.per_partner_in_flight)


RETIRED = {"TSUNAGU_PARTNERS_MAX_ATTEMPTS", "TSUNAGU_PARTNERS_FIRST_RETRY_S", "TSUNAGU_PARTNERS_MAX_RETRY_S"}
"""Settings of the old doubling backoff: refused rather than silently ignored."""


def cipher_from(settings: PartnerSettings) -> MultiFernet:
    keys = [k for k in settings.secret_keys.get_secret_value().split(",") if k]
    if not keys:
        raise ValueError("TSUNAGU_PARTNERS_SECRET_KEYS is not set")
    return MultiFernet([Fernet(k) for k in keys])


def check_settings() -> None:
    retired = sorted(RETIRED & set(os.environ))
    if retired:
        raise SystemExit(f"[tsunagu] error: {', '.join(retired)} no longer apply: the retry schedule is "
                         "TSUNAGU_PARTNERS_RETRY_SCHEDULE_S (a JSON list of waits) and TSUNAGU_PARTNERS_RETRY_SCALE")
    try:
        settings = PartnerSettings()
        cipher_from(settings)
        parse_static_hosts(settings.static_hosts)
    except ValueError as exc:
        raise SystemExit(f"[tsunagu] error: {exc}") from None


def build_service(kafka_access: PartnerKafkaAccess | None = None) -> Service:
    """`kafka_access` revokes a deactivated partner's own Kafka access (its user and ACLs); by default
    on the service's broker (`BrokerPartnerAccess`)."""
    settings = PartnerSettings()
    policy = settings.delivery_policy()
    quiet_http_client_logs()

    def routers(runtime: Runtime):
        return http.build_router(runtime, cipher=_LazyCipher(settings), intake_url=settings.intake_url,
                                 intake_timeout_s=settings.intake_timeout_s, url_rules=settings.url_rules(),
                                 credential_overlap_s=settings.credential_overlap_s,
                                 kafka_access=kafka_access or BrokerPartnerAccess(runtime.settings),
                                 lease_s=settings.lease_s, resolve=settings.resolver(),
                                 webhook_timeout_s=settings.timeout_s)

    async def webhooks(runtime: Runtime) -> None:
        await WebhookSender(runtime.db, partial(unit_of_work, runtime.db), cipher_from(settings), policy,
                            WebhookMetrics(runtime.registry),
                            runtime.tracer_provider.get_tracer("tsunagu.partner-notification.webhooks"),
                            url_rules=settings.url_rules(), resolve=settings.resolver(),
                            public_url=settings.public_url).run()

    async def mail(runtime: Runtime) -> None:
        # Registered even when nothing is sent: the alert on dead notices reads a series that exists (at 0).
        metrics = MailMetrics(runtime.registry)
        if not settings.smtp_host:
            log.warning("TSUNAGU_PARTNERS_SMTP_HOST is not set: mail notices are queued, not sent")
            return
        await MailSender(runtime.db, partial(unit_of_work, runtime.db), settings.smtp_server(), policy, metrics,
                         runtime.tracer_provider.get_tracer("tsunagu.partner-notification.mail")).run()

    async def held_events(runtime: Runtime) -> None:
        await HeldSweeper(partial(unit_of_work, runtime.db), runtime.registry,
                          interval_s=settings.held_sweep_s).run()

    return Service(
        name="partner-notification",
        title="Tsunagu 連携団体通知 (partner notification)",
        migrations=MIGRATIONS,
        http=routers,
        subscribe=kafka.subscribe,
        on_start=(webhooks, mail, held_events),
        gauges=GAUGES,
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
