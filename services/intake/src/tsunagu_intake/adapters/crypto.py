"""Personal data encrypted at rest, and a blind index for the duplicate check.

Details are encrypted with Fernet (AES-128-CBC and HMAC-SHA256) before they reach the database;
the key comes from settings and several keys may be given, newest first, so keys can rotate. The
duplicate check compares an HMAC of the normalised kana name and birth date, never the data.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from cryptography.fernet import Fernet, MultiFernet


class PersonalDataCipher:
    def __init__(self, keys: list[str], index_key: bytes):
        if not keys or not index_key:
            raise ValueError("the personal-data keys are not configured")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._index_key = index_key

    def seal(self, data: dict) -> bytes:
        return self._fernet.encrypt(json.dumps(data, ensure_ascii=False, default=str).encode())

    def open(self, token: bytes) -> dict:
        return json.loads(self._fernet.decrypt(bytes(token)))

    def seal_text(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def open_text(self, token: bytes) -> str:
        return self._fernet.decrypt(bytes(token)).decode()

    def blind_index(self, text: str) -> bytes:
        return hmac.new(self._index_key, text.encode(), hashlib.sha256).digest()
