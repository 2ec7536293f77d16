"""What housing support keeps about a home or a reason, encrypted at rest (Fernet, keys rotate)."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, MultiFernet


class Sealer:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("TSUNAGU_HOUSING_PII_KEYS is not set")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_setting(cls, value: str) -> "Sealer":
        """Comma-separated Fernet keys, newest first."""
        return cls([k for k in value.split(",") if k])

    def seal(self, data: dict) -> bytes:
        return self._fernet.encrypt(json.dumps(data, ensure_ascii=False).encode())

    def open(self, token: bytes) -> dict:
        return json.loads(self._fernet.decrypt(bytes(token)))
