"""Events of the referral service (つなぐシート): sheets, referrals and their state, timers, closing."""

from __future__ import annotations

from datetime import date
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field

from tsunagu_contracts.codes import (
    CaseClosureReason, ContactMethod, DeclineReason, Division, FollowUpOutcome, NeedCategory, ReferralOutcome,
    RerouteReason, Urgency,
)
from tsunagu_contracts.events.base import Event, Recipient, example_base
from tsunagu_contracts.events.intake import Needs

PARTNER = {"kind": "partner", "partner_id": "0192f0c1-7a2e-7cc3-9a41-00000000b001"}
REFERRAL = "0192f0c1-7a2e-7cc3-9a41-0000000e0001"


class ReferralEvent(Event):
    """An event about one referral, addressed to one recipient."""

    producer: ClassVar[str] = "referral"

    referral_id: UUID = Field(description=(
        "The referral (紹介/つなぎ): one need sent to one recipient. Every event about it names the same id."))
    recipient: Recipient = Field(description=(
        "The division or partner the referral is addressed to; only they (and the city) receive the event."))

    def addressees(self) -> tuple[Recipient, ...]:
        return (self.recipient,)


class ReferralSheetOpened(Event):
    """A つなぐシート was opened for a case: the person tells their story once."""

    type: ClassVar[str] = "tsunagu.referral.sheet-opened.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "sheet_id": "0192f0c1-7a2e-7cc3-9a41-0000000f0001",
        "person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa", "needs": ["rent_loan", "housing"],
        "primary_need": "rent_loan", "urgency": "high",
    }]})

    sheet_id: UUID = Field(description="The referral sheet (つなぐシート); referrals made from it name it.")
    person_ref: UUID = Field(description=(
        "The person (相談者/本人) as a pseudonymous id, kept when the person comes back; never a name or "
        "contact detail. Partners fetch details through intake's API, which records each provision."))
    needs: Needs
    primary_need: NeedCategory = Field(description=(
        "The most pressing need (◎ on the national form); one of `needs` (code list NeedCategory)."))
    urgency: Urgency = Field(description="How soon the person needs help (code list Urgency).")


class ReferralRequested(ReferralEvent):
    """A need was referred to a recipient, who is asked to accept it by `accept_by`."""

    type: ClassVar[str] = "tsunagu.referral.requested.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER,
        "sheet_id": "0192f0c1-7a2e-7cc3-9a41-0000000f0001", "need": "housing", "urgency": "high",
        "accept_by": "2026-12-02T17:00:00+09:00", "candidate_rank": 1,
    }]})

    sheet_id: UUID = Field(description="The referral sheet (つなぐシート) the referral was made from.")
    need: NeedCategory = Field(description="The need (課題) referred (code list NeedCategory).")
    urgency: Urgency = Field(description="How soon the person needs help (code list Urgency).")
    accept_by: AwareDatetime = Field(description=(
        "End of the acceptance window: close of business (17:15 Japan time) on the Nth business day after "
        "the request, skipping weekends, national holidays and 29 December to 3 January; RFC 3339 with "
        "its UTC offset (+09:00). When it passes unaccepted, ReferralOverdue follows."))
    candidate_rank: int = Field(ge=1, description="1 for the routing table's first choice, 2 for the next, ...")


class ReferralAccepted(ReferralEvent):
    """The recipient accepted the referral."""

    type: ClassVar[str] = "tsunagu.referral.accepted.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER}]})


class ReferralDeclined(ReferralEvent):
    """The recipient declined the referral; it goes to the next candidate."""

    type: ClassVar[str] = "tsunagu.referral.declined.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER, "reason": "capacity_full"}]})

    reason: DeclineReason = Field(description="Why the recipient declined (code list DeclineReason).")


class ReferralContactMade(ReferralEvent):
    """The recipient reached the person."""

    type: ClassVar[str] = "tsunagu.referral.contact-made.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER, "method": "home_visit"}]})

    method: ContactMethod = Field(description="How the recipient reached the person (code list ContactMethod).")


class ReferralCompleted(ReferralEvent):
    """The referral ended, with what came of it."""

    type: ClassVar[str] = "tsunagu.referral.completed.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER, "outcome": "supported"}]})

    outcome: ReferralOutcome = Field(description=(
        "Whether the referral led to help and, if not, why (code list ReferralOutcome)."))


class ReferralOverdue(ReferralEvent):
    """The referral was not accepted in time and is escalated to the coordinator."""

    type: ClassVar[str] = "tsunagu.referral.overdue.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER,
        "accept_by": "2026-12-02T17:00:00+09:00", "escalated_to": "self_reliance"}]})

    accept_by: AwareDatetime = Field(description=(
        "The acceptance deadline that passed, as ReferralRequested gave it; RFC 3339 with its UTC offset."))
    escalated_to: Division = Field(description=(
        "The division whose coordinator now chases the referral (code list Division); normally self_reliance."))


class ReferralRerouted(ReferralEvent):
    """The need went to another recipient; `recipient` is the one it left."""

    type: ClassVar[str] = "tsunagu.referral.rerouted.v1"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "referral_id": REFERRAL, "recipient": PARTNER,
        "new_referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0002",
        "new_recipient": {"kind": "division", "division": "housing"}, "reason": "declined"}]})

    new_referral_id: UUID = Field(description="The new referral of the same need, to `new_recipient`.")
    new_recipient: Recipient = Field(description="The division or partner the need went to; also an addressee.")
    reason: RerouteReason = Field(description="Why the need went elsewhere (code list RerouteReason).")

    def addressees(self) -> tuple[Recipient, ...]:
        return (self.recipient, self.new_recipient)


class CaseContactOverdue(Event):
    """An open case has had no recorded contact for too long: nobody may be left alone."""

    type: ClassVar[str] = "tsunagu.referral.case-contact-overdue.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "last_contact_at": "2026-11-01T14:00:00+09:00", "days_without_contact": 26,
        "escalated_to": "self_reliance"}]})

    last_contact_at: AwareDatetime | None = Field(description=(
        "The last recorded contact with the person, RFC 3339 with its UTC offset; null when there was none "
        "since the case opened."))
    days_without_contact: int = Field(ge=0, description=(
        "Whole days (24-hour periods) from the last contact, or from the case's opening when there was none, "
        "to when the event was raised."))
    escalated_to: Division = Field(description=(
        "The division whose coordinator must reach the person (code list Division); normally self_reliance."))


class CaseClosed(Event):
    """The case was closed by a coordinator."""

    type: ClassVar[str] = "tsunagu.referral.case-closed.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [{**example_base(), "reason": "stable_with_support"}]})

    reason: CaseClosureReason = Field(description="Why the coordinator closed the case (code list CaseClosureReason).")


class CaseReopened(Event):
    """A closed case was opened again: the person came back to a counter before every service had
    heard the case was closed, and nobody is turned away."""

    type: ClassVar[str] = "tsunagu.referral.case-reopened.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), "consultation_id": "0192f0c1-7a2e-7cc3-9a41-000000000002"}]})

    consultation_id: UUID = Field(description="The consultation that reopened the case.")


FOLLOW_UP = {"follow_up_id": "0192f0c1-7a2e-7cc3-9a41-000000f00001", "referral_id": REFERRAL, "need": "housing",
             "counter": "tax"}


class FollowUpDue(Event):
    """A referral was accepted or completed some business days ago: the counter that registered the
    case asks the person whether the help arrived (フォローアップ). Addressed to that counter alone."""

    type: ClassVar[str] = "tsunagu.referral.follow-up-due.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [{
        **example_base(), **FOLLOW_UP, "due_on": "2026-12-11", "answer_by": "2026-12-18T17:15:00+09:00"}]})

    follow_up_id: UUID = Field(description="The follow-up (フォローアップ); FollowUpAnswered names the same id.")
    referral_id: UUID = Field(description="The referral whose help the person is asked about.")
    need: NeedCategory = Field(description="The need (課題) that referral was for (code list NeedCategory).")
    counter: Division = Field(description=(
        "The counter (窓口) that registered the case, which asks the person; the event's only addressee."))
    due_on: date = Field(description="The business day the follow-up fell due (a Japan date, Asia/Tokyo).")
    answer_by: AwareDatetime = Field(description=(
        "After this moment the follow-up is listed as overdue: close of business (17:15 Japan time) some "
        "business days after `due_on`; RFC 3339 with its UTC offset (+09:00)."))

    def addressees(self) -> tuple[Recipient, ...]:
        return (Recipient.of_division(self.counter),)


class FollowUpAnswered(Event):
    """The person said whether the help arrived. `reached_not_helped` opens the need again for the
    coordinator: `reopened_referral_id` names the new referral."""

    type: ClassVar[str] = "tsunagu.referral.follow-up-answered.v1"
    producer: ClassVar[str] = "referral"
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**example_base(), **FOLLOW_UP, "outcome": "reached_helped"},
        {**example_base(), **FOLLOW_UP, "outcome": "reached_not_helped",
         "reopened_referral_id": "0192f0c1-7a2e-7cc3-9a41-0000000e0009"},
    ]})

    follow_up_id: UUID = Field(description="The follow-up (フォローアップ) answered, as FollowUpDue named it.")
    referral_id: UUID = Field(description="The referral whose help the person was asked about.")
    need: NeedCategory = Field(description="The need (課題) that referral was for (code list NeedCategory).")
    counter: Division = Field(description="The counter (窓口) that asked the person; the event's only addressee.")
    outcome: FollowUpOutcome = Field(description="What the person said (code list FollowUpOutcome).")
    reopened_referral_id: UUID | None = Field(default=None, description=(
        "The referral that opened the need again for the coordinator; set only when `outcome` is "
        "`reached_not_helped`, absent otherwise."))

    def addressees(self) -> tuple[Recipient, ...]:
        return (Recipient.of_division(self.counter),)
