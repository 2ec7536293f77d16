"""The partner-notification HTTP API: the registry for coordinators, and the partner's own edge."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated
from uuid import UUID

import httpx
from cryptography.fernet import MultiFernet
from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tsunagu_contracts import PartnerDeliveries, uuid7
from tsunagu_contracts.japan import japan_date
from tsunagu_partners.adapters.kafka_access import provision_partner, remove_partner
from tsunagu_partners.adapters.repository import unit_of_work
from tsunagu_partners.domain.commands import RegisterPartner, RespondToReferral, Subscription
from tsunagu_partners.handlers.details import provide
from tsunagu_partners.handlers.registry import TOKEN_PREFIX, partner_of_token, register_partner, set_subscription
from tsunagu_partners.handlers.responses import respond
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import Role, issue_token, read_token, require
from tsunagu_servicehost.errors import Refused
from tsunagu_servicehost.rows import jsonable
from tsunagu_servicehost.tracing import continue_trace
from tsunagu_topics import ensure_topics

COORDINATOR = require(Role.COORDINATOR)
_bearer = HTTPBearer(auto_error=False, description="A partner's API token, or a staff token")
SESSION_SECONDS = 3600


def build_router(runtime: Runtime, *, cipher: MultiFernet, intake_url: str,
                 intake_timeout_s: float = 10.0) -> list[APIRouter]:
    router = APIRouter(prefix="/v1/partners", tags=["partner-notification 連携団体"])
    answers_tracer = runtime.tracer_provider.get_tracer("tsunagu.partner-notification.answers")

    async def fetch_person(case_id: UUID) -> dict:
        """The person's details from intake, on a short-lived service token."""
        token = issue_token(runtime.settings.auth_secret.get_secret_value(), "service:partner-notification",
                            Role.SERVICE, ttl_seconds=60)
        try:
            async with httpx.AsyncClient(base_url=intake_url, timeout=intake_timeout_s) as client:
                response = await client.get(f"/internal/v1/cases/{case_id}/person",
                                            headers={"Authorization": f"Bearer {token}"})
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise Refused(503, "相談受付から本人情報を取得できませんでした。しばらくしてから再度お試しください。",
                          f"intake did not answer ({type(exc).__name__})") from None
        return response.json()

    async def this_partner_or(roles: set[Role], partner_id: UUID, credentials) -> None:
        """The partner itself (by its API token), or staff in one of `roles`."""
        if credentials is None:
            raise Refused(401, "認証が必要です。", "A bearer token is required.")
        token = credentials.credentials
        if token.startswith(TOKEN_PREFIX):
            async with unit_of_work(runtime.db) as uow:
                who = await partner_of_token(uow, token)
            if who is None:
                raise Refused(401, "トークンが無効です。", "The token is invalid.")
            if who != partner_id:
                raise Refused(403, "他の団体の情報は見られません。", "a partner sees only its own records")
            return
        try:
            principal = read_token(runtime.settings.auth_secret.get_secret_value(), token)
        except Exception:  # noqa: BLE001
            raise Refused(401, "トークンが無効です。", "The token is invalid or expired.") from None
        if principal.role not in roles:
            raise Refused(403, "この操作を行う権限がありません。", f"The {principal.role.value} role may not do this.")

    def partner_or(*roles: Role):
        async def check(partner_id: UUID, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)):
            await this_partner_or(set(roles), partner_id, credentials)
        return check

    @router.post("", status_code=201, summary="連携団体を登録する (register a partner; secrets shown once)",
                 dependencies=[Depends(COORDINATOR)])
    async def post_partner(command: RegisterPartner) -> dict:
        partner_id = uuid7()
        kafka = None
        if command.kafka_topic:
            settings = runtime.settings
            # The topic exists before anything may be written for it: the outbox relay publishes in
            # order and would stop at a record for a topic that does not exist.
            await ensure_topics(settings.kafka_bootstrap, [PartnerDeliveries.for_partner(partner_id)],
                                namespace=settings.topic_namespace, credentials=settings.kafka_credentials)
            kafka = await provision_partner(settings, partner_id)
        try:
            async with unit_of_work(runtime.db) as uow:
                created = await register_partner(uow, command, partner_id=partner_id, cipher=cipher,
                                                 now=datetime.now(UTC))
        except BaseException:
            # No partner, no Kafka user: a registration that failed leaves nobody able to connect.
            if kafka is not None:
                await remove_partner(runtime.settings, partner_id)
            raise
        if kafka is not None:
            created["kafka_credentials"] = {
                "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "username": kafka.username, "password": kafka.password,
                "topic_prefix": runtime.settings.topic_namespace + PartnerDeliveries.acl_prefix(partner_id),
                "group_prefix": runtime.settings.topic_namespace + PartnerDeliveries.acl_prefix(partner_id)}
        return created | {"notice_ja": "API トークン、Webhook シークレットと Kafka のパスワードは今回だけ表示されます。"
                                       "安全に保管してください。"}

    @router.put("/{partner_id}/subscription", summary="購読を設定する (set what the partner receives)",
                dependencies=[Depends(partner_or(Role.COORDINATOR))])
    async def put_subscription(partner_id: UUID, command: Subscription) -> dict:
        async with unit_of_work(runtime.db) as uow:
            await set_subscription(uow, partner_id, command)
        return command.model_dump(mode="json")

    @router.get("/{partner_id}/deliveries", summary="配信記録 (the partner's delivery log)",
                dependencies=[Depends(partner_or(Role.COORDINATOR, Role.OPS))])
    async def deliveries(partner_id: UUID, status: Annotated[str | None, Query(pattern="^[a-z]+$")] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        async with unit_of_work(runtime.db) as uow:
            rows = await uow.repo.deliveries.of_partner(partner_id, status, limit)
        return [jsonable(r) for r in rows]

    @router.post("/{partner_id}/deliveries/{delivery_id}/redelivery", status_code=202,
                 summary="再配信する (redeliver by hand)", dependencies=[Depends(require(Role.COORDINATOR, Role.OPS))])
    async def redeliver(partner_id: UUID, delivery_id: UUID) -> dict:
        async with unit_of_work(runtime.db) as uow:
            redelivered = await uow.repo.deliveries.redeliver(partner_id, delivery_id, japan_date(datetime.now(UTC)))
        if not redelivered:
            raise Refused.conflict("この配信は再配信できません（配信中、同意の撤回後、または取消済み）。",
                                   "only a delivered or dead delivery the partner may still see can be redelivered")
        return {"delivery_id": str(delivery_id), "status": "pending"}

    @router.post("/{partner_id}/webhook/enable", status_code=204, summary="Webhook を再開する (re-enable after 410)",
                 dependencies=[Depends(COORDINATOR)])
    async def enable(partner_id: UUID) -> None:
        async with unit_of_work(runtime.db) as uow:
            await uow.repo.registry.enable_webhook(partner_id)

    @router.post("/{partner_id}/session",
                 summary="他のサービス用のトークンを得る (exchange the API token for a 1-hour token other services accept)",
                 dependencies=[Depends(partner_or())])
    async def session(partner_id: UUID) -> dict:
        """Housing support and the other services know partners by a signed token naming the partner;
        only the partner's own API token obtains one, for an hour."""
        token = issue_token(runtime.settings.auth_secret.get_secret_value(), f"partner:{partner_id}", Role.PARTNER,
                            partner_id=partner_id, ttl_seconds=SESSION_SECONDS)
        return {"access_token": token, "token_type": "Bearer", "expires_in": SESSION_SECONDS}

    @router.post("/{partner_id}/referrals/{referral_id}/responses", status_code=201,
                 summary="紹介に回答する (a partner answers a referral addressed to it)",
                 dependencies=[Depends(partner_or())])
    async def post_response(partner_id: UUID, referral_id: UUID, command: RespondToReferral) -> dict:
        """Answers follow the referral: accepted or declined first, then contact_made (again if need be) or
        completed. An answer that does not fit where the referral stands (contact before acceptance, a second
        acceptance, a referral that ended, moved on, never reached the partner or whose case was closed) is
        refused with 409 and kept nowhere. Answers for one referral are applied in the order they were
        accepted."""
        async with unit_of_work(runtime.db) as uow:
            with continue_trace(answers_tracer, await uow.repo.deliveries.case_trace(partner_id, referral_id),
                                "partner answer", {"tsunagu.partner_id": str(partner_id),
                                                   "tsunagu.referral_id": str(referral_id),
                                                   "tsunagu.response": command.response.value}):
                response_id = await respond(uow, partner_id, referral_id, command, now=datetime.now(UTC))
                await uow.flush()  # in the span, so that the outbox rows keep the case's trace
        return {"response_id": str(response_id)}

    @router.get("/{partner_id}/referrals/{referral_id}",
                summary="紹介の本人情報を取得する (fetch details; each fetch is recorded as a provision)",
                dependencies=[Depends(partner_or())])
    async def get_details(partner_id: UUID, referral_id: UUID) -> dict:
        # A unit of work per step, not one around it all: no connection is held while intake answers
        # (handlers/details.py).
        return await provide(partial(unit_of_work, runtime.db), partner_id, referral_id, fetch_person,
                             now=datetime.now(UTC))

    @router.get("/{partner_id}/provisions", summary="提供記録 (provisions of personal data to this partner)",
                dependencies=[Depends(partner_or(Role.COORDINATOR, Role.OPS))])
    async def provisions(partner_id: UUID, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        async with unit_of_work(runtime.db) as uow:
            rows = await uow.repo.provisions.of_partner(partner_id, limit)
        return [jsonable(r) for r in rows]

    return [router]

