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
from tsunagu_contracts.japan import JST, japan_date
from tsunagu_partners.adapters.kafka_access import provision_partner, remove_partner
from tsunagu_partners.adapters.repository import unit_of_work
from tsunagu_partners.adapters.webhook_transport import Resolve, system_resolve
from tsunagu_partners.domain.answers import STATUS_JA
from tsunagu_partners.domain.commands import (
    AddressedReferral, ChangeWebhook, ChangedWebhook, Deactivated, PartnerDetail, PartnerSummary, RegisterPartner,
    RespondToReferral, RotatedSecret, RotatedToken, Subscription,
)
from tsunagu_partners.domain.webhook_urls import WebhookUrlRules
from tsunagu_partners.handlers.details import provide
from tsunagu_partners.handlers.registry import (
    TOKEN_PREFIX, NoKafkaAccess, PartnerKafkaAccess, change_webhook_url, check_webhook_url, deactivate,
    get_partner, list_partners, partner_of_token, register_partner, rotate_api_token, rotate_webhook_secret,
    set_subscription,
)
from tsunagu_partners.handlers.responses import respond
from tsunagu_partners.handlers.webhook_tests import TooSoonToTest, WebhookTestResult, send_webhook_test
from tsunagu_partners.handlers.webhooks import webhook_client
from tsunagu_servicehost import Runtime
from tsunagu_servicehost.auth import PARTNER_SESSION_SECONDS, Role, authenticate, require
from tsunagu_servicehost.errors import CONFLICT, NOT_FOUND, ErrorAnswer, Refused, needs_token
from tsunagu_servicehost.rows import jsonable
from tsunagu_servicehost.tracing import continue_trace
from tsunagu_topics import ensure_topics

COORDINATOR = require(Role.COORDINATOR)
_bearer = HTTPBearer(auto_error=False, description="A partner's API token, or a staff token")


def japan_time(at: datetime) -> str:
    return at.astimezone(JST).strftime("%Y-%m-%d %H:%M（日本時間）")


def build_router(runtime: Runtime, *, cipher: MultiFernet, intake_url: str, intake_timeout_s: float = 10.0,
                 url_rules: WebhookUrlRules = WebhookUrlRules(), credential_overlap_s: float = 24 * 3600,
                 kafka_access: PartnerKafkaAccess = NoKafkaAccess(), lease_s: float = 30.0,
                 resolve: Resolve = system_resolve, webhook_timeout_s: float = 10.0) -> list[APIRouter]:
    router = APIRouter(prefix="/v1/partners", tags=["partner-notification 連携団体"])
    answers_tracer = runtime.tracer_provider.get_tracer("tsunagu.partner-notification.answers")

    async def fetch_person(case_id: UUID, *, partner_id: UUID, purpose: str) -> dict:
        """The person's details from intake's internal API, for this partner and purpose, on a
        one-minute token this service signs for intake alone."""
        token = runtime.signer.for_service("intake")
        try:
            async with httpx.AsyncClient(base_url=intake_url, timeout=intake_timeout_s) as client:
                response = await client.get(f"/internal/v1/cases/{case_id}/person",
                                            params={"partner_id": str(partner_id), "purpose": purpose},
                                            headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise Refused(503, "相談受付から本人情報を取得できませんでした。しばらくしてから再度お試しください。",
                          f"intake did not answer ({type(exc).__name__})") from None
        if response.status_code == 403:
            # Intake's own record of the consent says no (partner-notification's copy is behind or wrong).
            try:
                detail = response.json()
            except ValueError:  # not intake's own answer (a proxy's page): the default reason
                detail = {}
            detail = detail if isinstance(detail, dict) else {}
            raise Refused(403, detail.get("message_ja", "本人の同意がないため、本人情報は提供できません。"),
                          detail.get("message_en", "intake refused: no consent for this partner and purpose"))
        if response.status_code != 200:
            raise Refused(503, "相談受付から本人情報を取得できませんでした。しばらくしてから再度お試しください。",
                          f"intake answered {response.status_code}")
        return response.json()

    async def this_partner_or(roles: set[Role], partner_id: UUID, credentials) -> None:
        """The partner itself (by its API token), or staff in one of `roles`."""
        if credentials is None:
            raise Refused.unauthenticated("認証が必要です。", "A bearer token is required.")
        token = credentials.credentials
        if token.startswith(TOKEN_PREFIX):
            async with unit_of_work(runtime.db) as uow:
                who = await partner_of_token(uow, token)
            if who is None:
                raise Refused.unauthenticated("トークンが無効です。", "The token is invalid.")
            if who != partner_id:
                raise Refused(403, "他の団体の情報は見られません。", "a partner sees only its own records")
            return
        principal = await authenticate(runtime.tokens, token)
        if principal.role not in roles:
            raise Refused(403, "この操作を行う権限がありません。", f"The {principal.role.value} role may not do this.")

    def partner_or(*roles: Role):
        async def check(partner_id: UUID, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)):
            await this_partner_or(set(roles), partner_id, credentials)
        # "partner": the partner's own API token, for its own partner_id only.
        return needs_token(check, ("partner", *(role.value for role in roles)))

    @router.post("", status_code=201, summary="連携団体を登録する (register a partner; secrets shown once)",
                 dependencies=[Depends(COORDINATOR)])
    async def post_partner(command: RegisterPartner) -> dict:
        partner_id = uuid7()
        kafka = None
        if command.webhook_url is not None:
            check_webhook_url(url_rules, str(command.webhook_url))  # before any topic or Kafka user is made
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
                                                 now=datetime.now(UTC), url_rules=url_rules)
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

    # The registry as coordinators read it ------------------------------------------------------

    @router.get("", summary="連携団体の一覧 (the partner registry: needs, areas, webhook state, subscription)",
                dependencies=[Depends(require(Role.COORDINATOR, Role.OPS, Role.COUNTER))])
    async def get_partners() -> list[PartnerSummary]:
        """Active partners first, then by name; deactivated ones stay listed with their history. Counters
        read it too: a person's consent names the partner it is for. No contact details or credentials."""
        async with unit_of_work(runtime.db) as uow:
            return await list_partners(uow)

    @router.get("/{partner_id}", responses=NOT_FOUND, summary="連携団体の登録内容 (a partner's record with its contact desk)",
                dependencies=[Depends(partner_or(Role.COORDINATOR, Role.OPS))])
    async def get_partner_record(partner_id: UUID) -> PartnerDetail:
        async with unit_of_work(runtime.db) as uow:
            return await get_partner(uow, partner_id)

    # ---------------------------------------------------------------------------------------------

    @router.post("/{partner_id}/api-token/rotate", status_code=201, dependencies=[Depends(COORDINATOR)],
                 summary="API トークンを更新する (rotate the API token; the new one shown once, the old one "
                         "valid until previous_valid_until)")
    async def post_token_rotation(partner_id: UUID) -> RotatedToken:
        async with unit_of_work(runtime.db) as uow:
            rotated = await rotate_api_token(uow, partner_id, overlap_s=credential_overlap_s)
        return RotatedToken(**rotated, notice_ja=f"新しい API トークンは今回だけ表示されます。以前のトークンは"
                            f"{japan_time(rotated['previous_valid_until'])}まで有効です。")

    @router.post("/{partner_id}/webhook-secret/rotate", status_code=201, dependencies=[Depends(COORDINATOR)],
                 summary="Webhook シークレットを更新する (rotate the webhook secret; until previous_valid_until "
                         "each webhook is signed with both)")
    async def post_secret_rotation(partner_id: UUID) -> RotatedSecret:
        async with unit_of_work(runtime.db) as uow:
            rotated = await rotate_webhook_secret(uow, partner_id, cipher=cipher, overlap_s=credential_overlap_s)
        return RotatedSecret(**rotated, notice_ja=f"新しい Webhook シークレットは今回だけ表示されます。"
                             f"{japan_time(rotated['previous_valid_until'])}までは新旧両方の署名が付きます。")

    @router.put("/{partner_id}/webhook", dependencies=[Depends(COORDINATOR)],
                summary="Webhook URL を変更する (move the webhook; checked as at registration)")
    async def put_webhook(partner_id: UUID, command: ChangeWebhook) -> ChangedWebhook:
        async with unit_of_work(runtime.db) as uow:
            changed = await change_webhook_url(uow, partner_id, str(command.webhook_url), cipher=cipher,
                                               url_rules=url_rules)
        return ChangedWebhook(**changed)

    @router.post("/{partner_id}/deactivate", dependencies=[Depends(COORDINATOR)],
                 summary="連携団体の利用を停止する (deactivate: tokens, deliveries, subscriptions and Kafka "
                         "forwards stop; history stays)")
    async def post_deactivation(partner_id: UUID) -> Deactivated:
        """Answers once no webhook to the partner is under way (at most one delivery lease); asking
        again is harmless and revokes its Kafka access again."""
        return Deactivated(**await deactivate(partial(unit_of_work, runtime.db), partner_id,
                                              kafka_access=kafka_access, lease_s=lease_s))

    @router.put("/{partner_id}/subscription", summary="購読を設定する (set what the partner receives)",
                dependencies=[Depends(partner_or(Role.COORDINATOR))])
    async def put_subscription(partner_id: UUID, command: Subscription) -> dict:
        async with unit_of_work(runtime.db) as uow:
            await set_subscription(uow, partner_id, command)
        return command.model_dump(mode="json")

    @router.get("/{partner_id}/deliveries", summary="配信記録 (the partner's delivery log)",
                dependencies=[Depends(partner_or(Role.COORDINATOR, Role.OPS))])
    async def deliveries(partner_id: UUID, status: Annotated[str | None, Query(max_length=20, pattern="^[a-z]+$")] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        async with unit_of_work(runtime.db) as uow:
            rows = await uow.repo.deliveries.of_partner(partner_id, status, limit)
        return [jsonable(r) for r in rows]

    @router.post("/{partner_id}/deliveries/{delivery_id}/redelivery", responses=CONFLICT, status_code=202,
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
        token = runtime.signer.partner_session(partner_id)
        return {"access_token": token, "token_type": "Bearer", "expires_in": PARTNER_SESSION_SECONDS}

    @router.post("/{partner_id}/referrals/{referral_id}/responses", responses=CONFLICT, status_code=201,
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

    # The partner's inbox ---------------------------------------------------------------------

    @router.get("/{partner_id}/referrals",
                summary="受け取った紹介の一覧 (the referrals addressed to this partner, newest first; no personal "
                        "data)", dependencies=[Depends(partner_or(Role.COORDINATOR, Role.OPS))])
    async def addressed_referrals(
            partner_id: UUID,
            before: Annotated[UUID | None, Query(description="The last referral_id of the previous page.")] = None,
            limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[AddressedReferral]:
        """Referrals on cases the partner was ever allowed to see (one still held for a consent it never
        had is not listed), each with its deadline to accept when known, the partner's last answer and
        its status. Reading it records no provision: the person's details are
        `GET /v1/partners/{partner_id}/referrals/{referral_id}`."""
        async with unit_of_work(runtime.db) as uow:
            rows = await uow.repo.referrals.addressed_to(partner_id, before, limit)
        return [AddressedReferral(**row, status_ja=STATUS_JA.get(row["status"], row["status"])) for row in rows]

    # Testing the partner's webhook -------------------------------------------------------------

    tested_too_recently = {429: {"model": ErrorAnswer, "description": "The partner's webhook was tested less than "
                                 "5 s ago; nothing was sent. Try again after `Retry-After` seconds.",
                                 "headers": {"Retry-After": {"description": "Seconds until the next test may be sent.",
                                                             "schema": {"type": "integer"}}}}}

    @router.post("/{partner_id}/webhook/test", responses=CONFLICT | tested_too_recently,
                 summary="Webhook をテストする (send a signed test event to the webhook now and show how it answered)",
                 dependencies=[Depends(partner_or(Role.COORDINATOR))])
    async def test_webhook(partner_id: UUID) -> WebhookTestResult:
        """Sends `tsunagu.partners.webhook-test.v1` (no case, no person) to the partner's webhook at once,
        signed as real deliveries are and checked against the same URL rules at send time; not queued,
        not retried, not in the delivery log. Answers 200 with the endpoint's status, the time it took,
        the start of a text answer or the kind of connection failure. One test per partner every 5 s
        (409 without a webhook or for a deactivated partner)."""
        try:
            return await send_webhook_test(
                partial(unit_of_work, runtime.db), partner_id, cipher=cipher, timeout_s=webhook_timeout_s,
                client=lambda: webhook_client(url_rules, resolve, httpx.Timeout(webhook_timeout_s)))
        except TooSoonToTest as too_soon:
            raise Refused(429, "Webhook のテストは 5 秒に 1 回までです。しばらくしてから再度お試しください。",
                          "one webhook test per partner every 5 s; try again shortly",
                          headers={"Retry-After": str(too_soon.retry_after_s)}) from None

    return [router]

