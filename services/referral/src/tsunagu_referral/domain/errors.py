"""Refusals the referral domain speaks, Japanese first; the HTTP entrypoint gives them a status.

Kept free of FastAPI so the Kafka handlers can raise and catch them too: a partner's answer that no
longer fits is refused the same way a coordinator's click is, and only HTTP turns that into a 409.
"""

from __future__ import annotations

from enum import StrEnum


class Why(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"


class Rejected(Exception):
    def __init__(self, why: Why, message_ja: str, message_en: str):
        super().__init__(message_en)
        self.why, self.message_ja, self.message_en = why, message_ja, message_en

    @classmethod
    def not_found(cls, what_ja: str, what_en: str) -> "Rejected":
        return cls(Why.NOT_FOUND, f"{what_ja}が見つかりません。", f"{what_en} not found.")

    @classmethod
    def conflict(cls, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.CONFLICT, message_ja, message_en)

    @classmethod
    def forbidden(cls, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.FORBIDDEN, message_ja, message_en)
