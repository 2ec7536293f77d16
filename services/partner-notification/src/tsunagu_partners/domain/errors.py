"""Refusals the partner domain speaks, Japanese first; the HTTP entrypoint gives them a status.

Kept free of FastAPI: the checks that refuse (access.referral_for) are also called by code the
Kafka consumers run, which has no HTTP answer to give.
"""

from __future__ import annotations

from enum import StrEnum


class Why(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"


class Rejected(Exception):
    def __init__(self, why: Why, message_ja: str, message_en: str, *, field: str | None = None):
        super().__init__(message_en)
        self.why, self.message_ja, self.message_en, self.field = why, message_ja, message_en, field

    @classmethod
    def not_found(cls, what_ja: str, what_en: str) -> "Rejected":
        return cls(Why.NOT_FOUND, f"{what_ja}が見つかりません。", f"{what_en} not found.")

    @classmethod
    def conflict(cls, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.CONFLICT, message_ja, message_en)

    @classmethod
    def forbidden(cls, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.FORBIDDEN, message_ja, message_en)

    @classmethod
    def invalid(cls, field: str, message_ja: str, message_en: str) -> "Rejected":
        return cls(Why.INVALID, message_ja, message_en, field=field)
