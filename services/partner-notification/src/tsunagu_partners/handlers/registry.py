"""Registering partners and their subscriptions; authenticating partners by their API token."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from datetime import datetime
from uuid import UUID

from cryptography.fernet import MultiFernet

from tsunagu_contracts import PartnerDeliveries
from tsunagu_partners.domain.commands import RegisterPartner, Subscription
from tsunagu_servicehost.errors import Rejected

TOKEN_PREFIX = "tzp_"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def register_partner(uow, cmd: RegisterPartner, *, partner_id: UUID,
                           cipher: MultiFernet, now: datetime) -> dict:
    """Returns the partner id, its API token and webhook secret: shown once, stored hashed or encrypted."""
    api_token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode() if cmd.webhook_url else None
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


async def set_subscription(uow, partner_id: UUID, cmd: Subscription) -> None:
    if not await uow.repo.registry.set_subscription(partner_id, cmd.event_types,
                                                    [n.value for n in cmd.need_categories], cmd.areas):
        raise Rejected.not_found("連携団体", "partner")


async def partner_of_token(uow, token: str) -> UUID | None:
    return await uow.repo.registry.partner_of_token_hash(token_hash(token))


def webhook_secret(cipher: MultiFernet, sealed: bytes) -> str:
    return cipher.decrypt(bytes(sealed)).decode()


__all__ = ["partner_of_token", "register_partner", "set_subscription", "token_hash", "webhook_secret"]
