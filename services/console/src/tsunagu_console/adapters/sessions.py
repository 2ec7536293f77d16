"""Who is signed in, kept in one sealed cookie: the console holds no session store of its own.

The cookie is encrypted and authenticated with Fernet (AES-128-CBC + HMAC-SHA256), HttpOnly,
SameSite=Strict and, outside loopback development, Secure. It holds the tokens the console calls
the services with, so nothing in it is readable or changeable by the browser. Every form carries
the session's CSRF token as well; SameSite alone does not cover older browsers.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

COOKIE = "tsunagu_session"


@dataclass(frozen=True)
class Session:
    kind: str
    """`staff` or `partner`."""
    role: str
    """counter, coordinator, council, ops or partner."""
    subject: str
    """Who: the staff member's subject, or the partner's id."""
    display_name: str
    token: str
    """The bearer token for the services (a staff token, or the partner's API token)."""
    csrf: str
    expires: int
    session_token: str = ""
    """A partner's 1-hour token for housing-support (from partner-notification's session exchange)."""
    via_provider: bool = False
    """Signed in at the city's identity provider: signing out ends the provider's session too."""

    @property
    def partner_id(self) -> str:
        return self.subject if self.kind == "partner" else ""


class SessionCookies:
    def __init__(self, keys: str, *, secure: bool, hours: float):
        names = [k.strip() for k in keys.split(",") if k.strip()]
        if not names:
            raise ValueError("TSUNAGU_CONSOLE_SESSION_KEYS is not set (Fernet keys, comma-separated)")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in names])
        except ValueError:
            raise ValueError("TSUNAGU_CONSOLE_SESSION_KEYS holds a key that is not a Fernet key") from None
        self.secure, self.seconds = secure, int(hours * 3600)

    def new(self, *, kind: str, role: str, subject: str, display_name: str, token: str, session_token: str = "",
            seconds: int | None = None, via_provider: bool = False) -> Session:
        return Session(kind=kind, role=role, subject=subject, display_name=display_name, token=token,
                       csrf=secrets.token_urlsafe(24), expires=int(time.time()) + min(seconds or self.seconds,
                                                                                       self.seconds),
                       session_token=session_token, via_provider=via_provider)

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def seal_value(self, value: dict) -> str:
        """Any small JSON value sealed like a session (a sign-in on its way through the identity provider)."""
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open_value(self, cookie: str | None, ttl: int) -> dict | None:
        """A value sealed by seal_value at most `ttl` seconds ago; None when missing, tampered with or older."""
        if not cookie:
            return None
        try:
            value = json.loads(self._fernet.decrypt(cookie.encode(), ttl=ttl))
        except (InvalidToken, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def open(self, cookie: str | None) -> Session | None:
        """The session in the cookie; None when there is none, it was tampered with, or it has expired."""
        if not cookie:
            return None
        try:
            data = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.seconds))
            session = Session(**data)
        except (InvalidToken, ValueError, TypeError):
            return None
        return session if session.expires > time.time() else None
