"""The e-mail notice a partner without a webhook (or a Kafka topic) gets for each referral addressed to it.

Mail leaves the city's systems and sits in mailboxes the city does not control, so the notice is
as thin as a webhook: the need's label, the deadline in Japan time, the referral id and a link to
the partner's inbox in the web console, where the partner signs in to see the rest. Never a name,
contact details or free text: the notice is built from the event's codes alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from uuid import UUID

from tsunagu_contracts import ReferralRequested
from tsunagu_contracts.codes import NeedCategory, Urgency
from tsunagu_contracts.japan import JST


@dataclass(frozen=True)
class Notice:
    subject: str
    text: str


def mailed_referral(body: str, partner_id: UUID) -> UUID | None:
    """The referral a queued event asks this partner to take, when it is one a notice is mailed for:
    a request addressed to the partner. (A reroute to it comes with such a request of its own.)"""
    event = json.loads(body)
    if event["type"] != ReferralRequested.type:
        return None
    data = event["data"]
    return UUID(data["referral_id"]) if data["recipient"].get("partner_id") == str(partner_id) else None


def referral_notice(body: str, console_url: str) -> Notice:
    """The notice for a ReferralRequested CloudEvent body (as queued), Japanese first."""
    data = json.loads(body)["data"]
    need = NeedCategory(data["need"])
    urgency = Urgency(data["urgency"])
    deadline = datetime.fromisoformat(data["accept_by"]).astimezone(JST)
    link = f"{console_url.rstrip('/')}/partner/referrals/{data['referral_id']}"
    weekday = "月火水木金土日"[deadline.weekday()]
    deadline_ja = f"{deadline.year}年{deadline.month}月{deadline.day}日（{weekday}）{deadline:%H:%M}"
    subject = f"【つなぐ】新しい紹介があります（{need.label_ja}）/ New referral"
    text = "\n".join([
        "つなぐ（座間市）から、貴団体あての紹介が届きました。",
        "",
        f"課題: {need.label_ja}",
        f"緊急度: {urgency.label_ja}",
        f"受理の期限: {deadline_ja}（日本時間）",
        f"紹介ID: {data['referral_id']}",
        "",
        "内容の確認と受理・辞退は、つなぐの画面にサインインして行ってください:",
        link,
        "",
        "このメールには個人情報を載せていません。返信には対応していません。",
        "",
        "----",
        "A new referral is addressed to your organisation in Tsunagu (Zama City).",
        f"Need: {need.value} / accept by {deadline.isoformat()} (Japan time) / referral {data['referral_id']}",
        f"Sign in to read it and answer: {link}",
        "This message carries no personal data; replies are not read.",
        "",
    ])
    return Notice(subject, text)


def message(notice: Notice, *, sender: str, to: str, delivery_id: UUID) -> EmailMessage:
    """The notice as a UTF-8 plain-text message. Its Message-ID names the delivery, the same on every
    attempt, so a mailbox can tell a retried send from a new notice."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, notice.subject
    msg["Message-ID"] = f"<{delivery_id}@{sender.rpartition('@')[2] or 'tsunagu.invalid'}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(notice.text, charset="utf-8")
    return msg


__all__ = ["Notice", "mailed_referral", "message", "referral_notice"]
