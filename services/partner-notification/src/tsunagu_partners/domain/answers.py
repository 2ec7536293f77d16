"""Which answer a partner may give to a referral, from where the referral stands as partner-notification knows it.

The referral service owns the referral's state machine and applies each answer it is sent; an
answer it cannot apply is dropped there, long after the partner was told 201. So the partner's
edge checks the answer against the same moves first, refuses what does not fit (409), and moves
its own copy of the status at once, so that the partner's next answer is checked against it:

    requested ──accepted──▶ accepted ──contact_made──▶ contact_made ──completed──▶ completed
        └──declined──▶ declined      └──────────────completed────────────────────▲
                                          (contact_made may be answered again)

The referral's own events still move the copy (a coordinator may act for the partner, reroute or
close); `reported_status_applies` keeps them from taking it back a step the partner already took.

A request the partner never received (its delivery a dead letter, DeliveryFailed) leaves the copy
unreachable when it still stands requested, as referral marks the referral: referral tells of that
only when it moves the need on (ReferralRerouted), not when nobody is left to ask.
"""

from __future__ import annotations

from tsunagu_contracts.codes import PartnerResponseKind as Answer

STATUS_JA = {"requested": "依頼中", "accepted": "受理", "declined": "辞退", "contact_made": "本人と接触",
             "completed": "終了", "rerouted": "つなぎ直し", "unreachable": "通知不達", "closed": "相談終了"}

ANSWERS: dict[tuple[str, Answer], str] = {
    ("requested", Answer.ACCEPTED): "accepted",
    ("requested", Answer.DECLINED): "declined",
    ("accepted", Answer.CONTACT_MADE): "contact_made",
    ("accepted", Answer.COMPLETED): "completed",
    ("contact_made", Answer.CONTACT_MADE): "contact_made",
    ("contact_made", Answer.COMPLETED): "completed",
}

# The one path a referral walks forward; declined and rerouted leave it.
PATH = ("requested", "accepted", "contact_made", "completed")
UNREACHABLE = "unreachable"
OVER = frozenset({"declined", "completed", "rerouted", UNREACHABLE})
CLOSED = "closed"
"""A referral of a closed case (fan_out.on_case_closed): it takes no answer until the case is reopened."""


class AnswerRefused(Exception):
    def __init__(self, message_ja: str, message_en: str):
        super().__init__(message_en)
        self.message_ja, self.message_en = message_ja, message_en


def status_after(status: str, answer: Answer) -> str:
    """The referral's status once `answer` is applied; raises `AnswerRefused` when it does not fit."""
    if status == CLOSED:
        raise AnswerRefused("この相談は終了しているため、回答できません。", "the case is closed")
    if status in OVER:
        raise AnswerRefused("この紹介は終了しているか、他の紹介先に移っています。回答はできません。",
                            f"the referral is {status}: it takes no more answers")
    try:
        return ANSWERS[(status, answer)]
    except KeyError:
        pass
    if status == "requested":
        raise AnswerRefused(f"まだ受理していない紹介に「{answer.label_ja}」とは回答できません。先に「受理」と回答してください。",
                            f"the referral is not accepted yet: answer accepted before {answer.value}")
    if answer is Answer.ACCEPTED:
        raise AnswerRefused("この紹介はすでに受理しています。", "the referral was already accepted")
    raise AnswerRefused(f"「{STATUS_JA[status]}」の紹介に「{answer.label_ja}」とは回答できません。",
                        f"a {status} referral cannot be answered {answer.value}")


def status_when_undelivered(status: str) -> str:
    """The copy's status once the request to take the referral was found undelivered: referral marks
    a referral unreachable only while it is requested, and leaves one that moved on as it is."""
    return UNREACHABLE if status == "requested" else status


def reported_status_applies(current: str, reported: str) -> bool:
    """Whether referral's event reporting `reported` moves a copy that stands at `current`.

    Referral's events come in order, but after the partner's own answers have moved the copy: news
    of a step the partner already went past is late, not a step back. A declined referral stays
    declined when referral reroutes its need to the next candidate.
    """
    if current == CLOSED or (current == "declined" and reported == "rerouted"):
        return False
    if current in PATH and reported in PATH:
        return PATH.index(reported) >= PATH.index(current)
    return True
