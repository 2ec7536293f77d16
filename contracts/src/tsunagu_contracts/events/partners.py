"""Events of the partner-notification service: partners' answers and failed deliveries."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from tsunagu_contracts.codes import (
    ContactMethod, DeclineReason, DeliveryChannel, PartnerResponseKind, ReferralOutcome,
)
from tsunagu_contracts.events.base import Event, example_base

PARTNER = "0192f0c1-7a2e-7cc3-9a41-00000000b001"


class PartnerResponded(Event):
    """A partner answered a referral addressed to it; the referral service applies the answer."""

    type: ClassVar[str] = "tsunagu.partners.responded.v1"
    producer: ClassVar[str] = "partner-notification"
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**example_base(), "response_id": "0192f0c1-7a2e-7cc3-9a41-000000400001", "partner_id": PARTNER,
         "referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0001", "response": "accepted"},
        {**example_base(), "response_id": "0192f0c1-7a2e-7cc3-9a41-000000400002", "partner_id": PARTNER,
         "referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0001", "response": "completed", "outcome": "no_funds"},
    ]})

    response_id: UUID = Field(description="The partner's answer as partner-notification recorded it.")
    partner_id: UUID = Field(description="The partner organisation (Team Zama) that answered, by its registry id.")
    referral_id: UUID = Field(description="The referral (紹介) answered; it was addressed to this partner.")
    response: PartnerResponseKind = Field(description=(
        "The answer (code list PartnerResponseKind); it decides which detail below, if any, is set."))
    decline_reason: DeclineReason | None = Field(default=None, description=(
        "Why the partner declined (code list DeclineReason); set exactly when `response` is `declined`."))
    contact_method: ContactMethod | None = Field(default=None, description=(
        "How the partner reached the person (code list ContactMethod); set exactly when `response` is `contact_made`."))
    outcome: ReferralOutcome | None = Field(default=None, description=(
        "How the referral ended (code list ReferralOutcome); set exactly when `response` is `completed`."))

    @model_validator(mode="after")
    def _details_match_the_response(self) -> "PartnerResponded":
        needed = {
            PartnerResponseKind.DECLINED: "decline_reason",
            PartnerResponseKind.CONTACT_MADE: "contact_method",
            PartnerResponseKind.COMPLETED: "outcome",
        }.get(self.response)
        for detail in ("decline_reason", "contact_method", "outcome"):
            present = getattr(self, detail) is not None
            if detail == needed and not present:
                raise ValueError(f"{detail} is required when the response is {self.response.value}")
            if detail != needed and present:
                raise ValueError(f"{detail} does not belong to a {self.response.value} response")
        return self


class DeliveryFailed(Event):
    """An event could not be delivered to a partner after the last retry; it is in the dead letters.

    When the event asked the partner to take a referral, `referral_id` names it: the referral
    service then knows the partner never heard of it, and moves the need on.
    """

    type: ClassVar[str] = "tsunagu.partners.delivery-failed.v1"
    producer: ClassVar[str] = "partner-notification"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "delivery_id": "0192f0c1-7a2e-7cc3-9a41-000000500001", "partner_id": PARTNER,
        "event_id": "0192f0c1-7a2e-7cc3-9a41-000000600001", "channel": "webhook", "attempts": 8,
        "last_status": 503}, {
        **example_base(), "delivery_id": "0192f0c1-7a2e-7cc3-9a41-000000500002", "partner_id": PARTNER,
        "event_id": "0192f0c1-7a2e-7cc3-9a41-000000600002", "channel": "webhook", "attempts": 8,
        "event_type": "tsunagu.referral.requested.v1", "referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0001"}]})

    delivery_id: UUID = Field(description=(
        "The delivery inside partner-notification; its redelivery endpoint takes this id."))
    partner_id: UUID = Field(description="The partner organisation (Team Zama) that did not receive the event.")
    event_id: UUID = Field(description="`ce_id` of the event that was not delivered.")
    channel: DeliveryChannel = Field(description="How the event was to reach the partner (code list DeliveryChannel).")
    attempts: int = Field(ge=1, description="How many times delivery was tried, the first attempt included.")
    last_status: int | None = Field(default=None, ge=100, le=599, description=(
        "The HTTP status of the last webhook attempt; absent when no HTTP answer came (a timeout or a "
        "refused connection)."))
    event_type: str | None = Field(default=None, pattern=r"^tsunagu\.[a-z-]+\.[a-z-]+\.v\d+$",
                                   description=(
                                       "`ce_type` of the event that was not delivered; absent when the delivery "
                                       "did not record it."))
    referral_id: UUID | None = Field(default=None, description=(
        "Set when the event asked this partner to take a referral (a ReferralRequested to it, or a "
        "ReferralRerouted whose new recipient it is): that referral, which the partner never heard of."))
