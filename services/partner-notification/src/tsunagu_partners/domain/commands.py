"""What coordinators and partners send to partner-notification."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from tsunagu_contracts import CATALOGUE
from tsunagu_contracts.events.base import CheckedMunicipalityCode
from tsunagu_contracts.codes import ContactMethod, DeclineReason, NeedCategory, PartnerResponseKind, ReferralOutcome

EVENT_TYPES = tuple(e.type for e in CATALOGUE)

Area = Annotated[CheckedMunicipalityCode, Field(max_length=6)]
"""An area a partner serves: a 全国地方公共団体コード (six digits, the last a check digit). The contracts have
no list of the codes, so the format and the check digit are what is validated."""
MAX_AREAS = 50


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Contact(Body):
    department: str = Field(max_length=100, description="Team or desk, not a person.")
    # A plain dot-atom address (RFC 5322): no comma, semicolon, bracket, quote or comment, which a
    # mail header or an SMTP client would read as a second address or a name (mail notices go here).
    email: str = Field(max_length=200, pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
    phone: str | None = Field(default=None, max_length=30, pattern=r"^[0-9+\-() ]+$")


class RegisterPartner(Body):
    """Register a Team Zama partner organisation (coordinator)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "NPO法人 ざまフードバンク", "need_categories": ["no_food", "income"], "areas": ["142166"],
        "contact": {"department": "相談窓口", "email": "desk@foodbank.example", "phone": "046-000-0000"},
        "webhook_url": "https://foodbank.example/tsunagu/webhook", "kafka_topic": False}]})

    name: str = Field(min_length=1, max_length=200)
    need_categories: list[NeedCategory] = Field(min_length=1, max_length=16)
    areas: list[Area] = Field(min_length=1, max_length=MAX_AREAS)
    contact: Contact
    webhook_url: AnyHttpUrl | None = Field(default=None, description="Where events are sent. With neither a "
                                           "webhook nor a Kafka topic, the partner is mailed a notice of each "
                                           "referral addressed to it at contact.email, with a link to its "
                                           "inbox in the web console.")
    kafka_topic: bool = Field(default=False, description="Also deliver to the partner's own Kafka topic.")


class Subscription(Body):
    """What a partner wants. Empty lists mean everything the partner may see of that kind."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "event_types": ["tsunagu.referral.requested.v1", "tsunagu.intake.consent-withdrawn.v1"],
        "need_categories": ["no_food"], "areas": ["142166"]}]})

    event_types: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=len(EVENT_TYPES))
    need_categories: list[NeedCategory] = Field(default_factory=list, max_length=len(NeedCategory))
    areas: list[Area] = Field(default_factory=list, max_length=MAX_AREAS)

    @model_validator(mode="after")
    def _known(self) -> "Subscription":
        unknown = sorted(set(self.event_types) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return self


class ChangeWebhook(Body):
    """Move a partner's webhook (coordinator); the URL is checked as at registration."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"webhook_url": "https://foodbank.example/tsunagu/webhook-v2"}]})

    webhook_url: AnyHttpUrl


class RotatedToken(BaseModel):
    """A new API token, shown this once; the previous one works until `previous_valid_until`."""

    partner_id: UUID
    api_token: str
    previous_valid_until: datetime
    notice_ja: str


class RotatedSecret(BaseModel):
    """A new webhook secret, shown this once; until `previous_valid_until` each webhook carries a
    signature with the new secret and one with the previous (`v1,<new> v1,<previous>`)."""

    partner_id: UUID
    webhook_secret: str
    previous_valid_until: datetime
    notice_ja: str


class ChangedWebhook(BaseModel):
    """Where the webhook now goes; `webhook_secret` only when the partner had none (shown this once)."""

    partner_id: UUID
    webhook_url: str
    webhook_secret: str | None = None


class Deactivated(BaseModel):
    """The partner is deactivated; its undelivered deliveries were cancelled and are kept."""

    partner_id: UUID
    deactivated_at: datetime
    deliveries_cancelled: int


class WebhookState(BaseModel):
    """`enabled`; `disabled` after the partner's endpoint answered 410 Gone (until a coordinator
    enables it again or the URL moves); `none` when the partner receives on Kafka only."""

    state: Literal["enabled", "disabled", "none"]
    disabled_at: datetime | None = None


class PartnerSummary(BaseModel):
    """A partner as the registry lists it; no credential, not even a hash."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "partner_id": "01938a6e-7f00-7000-8000-000000000001", "name": "NPO法人 ざまフードバンク",
        "need_categories": ["no_food"], "areas": ["142166"], "registered_at": "2026-11-27T01:00:00Z",
        "active": True, "deactivated_at": None, "webhook": {"state": "enabled", "disabled_at": None},
        "kafka_topic": False, "subscription": {"event_types": [], "need_categories": [], "areas": []}}]})

    partner_id: UUID
    name: str
    need_categories: list[str]
    areas: list[str]
    registered_at: datetime
    active: bool
    deactivated_at: datetime | None = None
    webhook: WebhookState
    kafka_topic: bool = Field(description="Whether deliveries also go to the partner's own Kafka topic.")
    subscription: Subscription | None = None


class PartnerDetail(PartnerSummary):
    """A partner with its contact desk and webhook URL."""

    contact: dict
    webhook_url: str | None = None


class RespondToReferral(Body):
    """A partner's answer to a referral addressed to it."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"response": "accepted"},
        {"response": "declined", "decline_reason": "capacity_full"},
        {"response": "completed", "outcome": "supported"}]})

    response: PartnerResponseKind
    decline_reason: DeclineReason | None = None
    contact_method: ContactMethod | None = None
    outcome: ReferralOutcome | None = None


class AddressedReferral(BaseModel):
    """A referral addressed to a partner, as its inbox lists it: ids, codes and times, never the person."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0001", "case_id": "0192f0c1-7a2e-7cc3-9a41-000000000001",
        "municipality_code": "142166", "need": "no_food", "accept_by": "2026-12-02T17:00:00+09:00",
        "last_response": None, "last_response_at": None, "status": "requested", "status_ja": "依頼中",
        "updated_at": "2026-11-27T10:00:00+09:00"}]})

    referral_id: UUID
    case_id: UUID = Field(description="The case's pseudonymous id.")
    municipality_code: str
    need: NeedCategory
    accept_by: datetime | None = Field(description="The deadline to accept, when the request reached the "
                                                   "partner's webhook; else unknown here.")
    last_response: PartnerResponseKind | None = Field(description="The partner's last answer; none yet when null.")
    last_response_at: datetime | None
    status: str = Field(description="Where the referral stands as partner-notification knows it: requested, "
                                    "accepted, declined, contact_made, completed, rerouted, unreachable or closed.")
    status_ja: str = Field(description="The status in Japanese, as the partner reads it.")
    updated_at: datetime


__all__ = ["EVENT_TYPES", "AddressedReferral", "ChangeWebhook", "ChangedWebhook", "Contact", "Deactivated",
           "PartnerDetail", "PartnerSummary", "RegisterPartner", "RespondToReferral", "RotatedSecret", "RotatedToken",
           "Subscription", "WebhookState"]
