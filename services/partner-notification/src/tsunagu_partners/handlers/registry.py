"""Registering partners and their subscriptions; authenticating partners by their API token;
rotating their credentials, moving their webhook and deactivating them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import secrets
import time
from datetime import datetime
from typing import Protocol
from uuid import UUID

from cryptography.fernet import MultiFernet

from tsunagu_contracts import PartnerDeliveries
from tsunagu_outbox import NewUnitOfWork
from tsunagu_partners.domain.commands import (
    PartnerDetail, PartnerSummary, RegisterPartner, Subscription, WebhookState,
)
from tsunagu_partners.domain.webhook_urls import UrlRefused, WebhookUrlRules
from tsunagu_servicehost.errors import Rejected

log = logging.getLogger("tsunagu.partners.registry")

TOKEN_PREFIX = "tzp_"


class PartnerKafkaAccess(Protocol):
    """The partner's own access to Kafka (its user and the ACLs on its topic prefix).

    `revoke` is called when the partner is deactivated, after the deactivation is committed, and
    again if the deactivation is asked again: it must be idempotent."""

    async def revoke(self, partner_id: UUID, kafka_topic: str | None) -> None: ...


class NoKafkaAccess:
    """The default: partners have no Kafka users of their own to revoke."""

    async def revoke(self, partner_id: UUID, kafka_topic: str | None) -> None:
        return None


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def check_webhook_url(rules: WebhookUrlRules, url: str) -> None:
    """Rejected (422, field webhook_url) when the URL breaks a rule of domain/webhook_urls.py."""
    try:
        rules.check_url(url)
    except UrlRefused as refused:
        raise Rejected.invalid("webhook_url", refused.message_ja, refused.message_en) from None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def register_partner(uow, cmd: RegisterPartner, *, partner_id: UUID, cipher: MultiFernet, now: datetime,
                           url_rules: WebhookUrlRules = WebhookUrlRules()) -> dict:
    """Returns the partner id, its API token and webhook secret: shown once, stored hashed or encrypted."""
    if cmd.webhook_url:
        check_webhook_url(url_rules, str(cmd.webhook_url))
    api_token = new_api_token()
    webhook_secret = new_webhook_secret() if cmd.webhook_url else None
    topic = PartnerDeliveries.for_partner(partner_id).name if cmd.kafka_topic else None
    registry = uow.repo.registry
    needs = [n.value for n in cmd.need_categories]
    await registry.add_partner(partner_id, cmd.name, needs, cmd.areas, cmd.contact.model_dump_json(),
                               token_hash(api_token), str(cmd.webhook_url) if cmd.webhook_url else None,
                               cipher.encrypt(webhook_secret.encode()) if webhook_secret else None, topic, now)
    # Until the partner narrows it, it hears about its own need categories and areas.
    await registry.add_subscription(partner_id, [], needs, cmd.areas)
    return {"partner_id": str(partner_id), "api_token": api_token, "webhook_secret": webhook_secret,
            "kafka_topic": topic, "kafka_acl_prefix": PartnerDeliveries.acl_prefix(partner_id) if topic else None}


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def rotate_api_token(uow, partner_id: UUID, *, overlap_s: float) -> dict:
    """A new API token, shown once; the one it replaces still works until `previous_valid_until`."""
    token = new_api_token()
    until = await uow.repo.registry.rotate_api_token(partner_id, token_hash(token), overlap_s)
    if until is None:
        raise _not_active(await uow.repo.registry.state(partner_id))
    return {"partner_id": str(partner_id), "api_token": token, "previous_valid_until": until}


async def rotate_webhook_secret(uow, partner_id: UUID, *, cipher: MultiFernet, overlap_s: float) -> dict:
    """A new webhook secret, shown once; until `previous_valid_until` each webhook carries a
    signature with each secret (Standard Webhooks: `v1,<new> v1,<previous>`)."""
    secret = new_webhook_secret()
    until = await uow.repo.registry.rotate_webhook_secret(partner_id, cipher.encrypt(secret.encode()), overlap_s)
    if until is None:
        state = await uow.repo.registry.state(partner_id)
        if state is not None and state["deactivated_at"] is None:
            raise Rejected.conflict("この団体には Webhook がありません。先に Webhook URL を設定してください。",
                                    "the partner has no webhook: set its webhook URL first")
        raise _not_active(state)
    return {"partner_id": str(partner_id), "webhook_secret": secret, "previous_valid_until": until}


async def change_webhook_url(uow, partner_id: UUID, url: str, *, cipher: MultiFernet,
                             url_rules: WebhookUrlRules) -> dict:
    """The webhook moves to `url`; a partner that had none gets its first secret, shown once."""
    check_webhook_url(url_rules, url)
    secret = new_webhook_secret()
    took_new_secret = await uow.repo.registry.set_webhook(partner_id, url, cipher.encrypt(secret.encode()))
    if took_new_secret is None:
        raise _not_active(await uow.repo.registry.state(partner_id))
    return {"partner_id": str(partner_id), "webhook_url": url, "webhook_secret": secret if took_new_secret else None}


def _not_active(state) -> Rejected:
    if state is None:
        return Rejected.not_found("連携団体", "partner")
    return Rejected.conflict("この団体は利用停止されています。", "the partner is deactivated")


async def deactivate(new_uow: NewUnitOfWork, partner_id: UUID, *, kafka_access: PartnerKafkaAccess,
                     lease_s: float, poll_s: float = 0.1) -> dict:
    """Stops everything the partner receives or does, and keeps its history.

    1. One transaction: the partner is marked deactivated under its row lock (its tokens stop
       working, it matches no fan-out) and its pending deliveries and unpublished forwards are
       taken back, and the events held for it until a consent are dropped (adapters/registry.py,
       adapters/deliveries.py and adapters/held_events.py give the rules).
    2. Sends already under way are waited for, at most one lease: none is cut off mid-request.
    3. What those sends left pending (a retry) is cancelled too.
    4. Its Kafka access is revoked (`PartnerKafkaAccess`), after the commit, so a revocation that
       fails leaves a deactivated partner that a second request finishes.
    """
    async with new_uow() as uow:
        row = await uow.repo.registry.deactivate(partner_id)
        if row is None:
            raise Rejected.not_found("連携団体", "partner")
        cancelled = await uow.repo.deliveries.cancel_undelivered(partner_id, including_sending=False)
        await uow.repo.held.drop_for_partner(partner_id)  # no consent will ever release them to it
        if row["kafka_topic"]:
            await uow.repo.deliveries.drop_unpublished_forwards_to(row["kafka_topic"])
    deadline = time.monotonic() + lease_s
    while time.monotonic() < deadline:
        async with new_uow() as uow:
            if not await uow.repo.deliveries.in_flight(partner_id):
                break
        await asyncio.sleep(poll_s)
    async with new_uow() as uow:
        cancelled += await uow.repo.deliveries.cancel_undelivered(partner_id, including_sending=True)
    await kafka_access.revoke(partner_id, row["kafka_topic"])
    log.info("partner %s deactivated; %d undelivered deliveries cancelled", partner_id, cancelled)
    return {"partner_id": str(partner_id), "deactivated_at": row["deactivated_at"], "deliveries_cancelled": cancelled}


async def set_subscription(uow, partner_id: UUID, cmd: Subscription) -> None:
    if not await uow.repo.registry.set_subscription(partner_id, cmd.event_types,
                                                    [n.value for n in cmd.need_categories], cmd.areas):
        raise Rejected.not_found("連携団体", "partner")


def partner_view(row) -> PartnerDetail:
    """A registry row as coordinators read it: its webhook's state, never a credential."""
    if row["webhook_url"] is None:
        webhook = WebhookState(state="none")
    elif row["webhook_disabled_at"] is not None:
        webhook = WebhookState(state="disabled", disabled_at=row["webhook_disabled_at"])
    else:
        webhook = WebhookState(state="enabled")
    subscription = None if row["subscribed_event_types"] is None else Subscription(
        event_types=row["subscribed_event_types"], need_categories=row["subscribed_need_categories"],
        areas=row["subscribed_areas"])
    contact = row["contact"]
    return PartnerDetail(
        partner_id=row["partner_id"], name=row["name"], need_categories=list(row["need_categories"]),
        areas=list(row["areas"]), registered_at=row["registered_at"], active=row["deactivated_at"] is None,
        deactivated_at=row["deactivated_at"], webhook=webhook, kafka_topic=row["kafka_topic"],
        subscription=subscription, contact=json.loads(contact) if isinstance(contact, str) else dict(contact),
        webhook_url=row["webhook_url"])


async def list_partners(uow) -> list[PartnerSummary]:
    return [PartnerSummary(**partner_view(row).model_dump(exclude={"contact", "webhook_url"}))
            for row in await uow.repo.registry.partners()]


async def get_partner(uow, partner_id: UUID) -> PartnerDetail:
    row = await uow.repo.registry.partner(partner_id)
    if row is None:
        raise Rejected.not_found("連携団体", "partner")
    return partner_view(row)


async def partner_of_token(uow, token: str) -> UUID | None:
    return await uow.repo.registry.partner_of_token_hash(token_hash(token))


def webhook_secret(cipher: MultiFernet, sealed: bytes) -> str:
    return cipher.decrypt(bytes(sealed)).decode()


__all__ = ["NoKafkaAccess", "PartnerKafkaAccess", "change_webhook_url", "check_webhook_url", "deactivate",
           "partner_of_token", "register_partner", "rotate_api_token", "rotate_webhook_secret", "set_subscription",
           "token_hash", "webhook_secret"]
