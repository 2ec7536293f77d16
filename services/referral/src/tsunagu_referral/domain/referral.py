"""The state machine of one referral.

    requested ──accept──▶ accepted ──contact──▶ contact_made ──complete──▶ completed
        │                    │  └────────────complete──────────────────────▲
        ├──decline──▶ declined (then the next candidate is asked)
        ├──mark_unreachable──▶ unreachable (the request never reached the partner; the next is asked)
        ├──withdraw──▶ withdrawn  (also from accepted and contact_made: the partner's consent or
        │                          statutory basis ended; a division is asked)
        └──reroute──▶ rerouted   (also from accepted and contact_made)

Any other move is illegal and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CONTACT_MADE = "contact_made"
    COMPLETED = "completed"
    REROUTED = "rerouted"
    UNREACHABLE = "unreachable"
    WITHDRAWN = "withdrawn"

    @property
    def label_ja(self) -> str:
        return {"requested": "依頼中", "accepted": "受理", "declined": "辞退", "contact_made": "本人と接触",
                "completed": "終了", "rerouted": "つなぎ直し",
                "unreachable": "通知不達（連携団体に届かず）",
                "withdrawn": "取り下げ（同意の撤回・共有の根拠の終了）"}[self.value]

    @property
    def active(self) -> bool:
        return self in ACTIVE


class Action(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    CONTACT = "contact"
    COMPLETE = "complete"
    REROUTE = "reroute"
    MARK_UNREACHABLE = "mark_unreachable"
    WITHDRAW = "withdraw"


ACTIVE = frozenset({Status.REQUESTED, Status.ACCEPTED, Status.CONTACT_MADE})

TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.REQUESTED, Action.ACCEPT): Status.ACCEPTED,
    (Status.REQUESTED, Action.DECLINE): Status.DECLINED,
    (Status.REQUESTED, Action.REROUTE): Status.REROUTED,
    (Status.REQUESTED, Action.MARK_UNREACHABLE): Status.UNREACHABLE,
    (Status.REQUESTED, Action.WITHDRAW): Status.WITHDRAWN,
    (Status.ACCEPTED, Action.WITHDRAW): Status.WITHDRAWN,
    (Status.CONTACT_MADE, Action.WITHDRAW): Status.WITHDRAWN,
    (Status.ACCEPTED, Action.CONTACT): Status.CONTACT_MADE,
    (Status.ACCEPTED, Action.COMPLETE): Status.COMPLETED,
    (Status.ACCEPTED, Action.REROUTE): Status.REROUTED,
    (Status.CONTACT_MADE, Action.CONTACT): Status.CONTACT_MADE,
    (Status.CONTACT_MADE, Action.COMPLETE): Status.COMPLETED,
    (Status.CONTACT_MADE, Action.REROUTE): Status.REROUTED,
}


class IllegalTransition(Exception):
    def __init__(self, status: Status, action: Action):
        super().__init__(f"a {status.value} referral cannot {action.value}")
        self.status, self.action = status, action


def next_status(status: Status, action: Action) -> Status:
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise IllegalTransition(status, action) from None
