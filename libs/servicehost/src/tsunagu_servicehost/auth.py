"""Bearer tokens: who calls, in which role; each role may do only its own part.

Every token is checked against a public key; no service holds a key that lets it mint tokens
another service accepts in someone else's name.

- Staff tokens come from the city's OpenID Connect identity provider (or the development issuer
  that `make run` sets up, devtokens.py): checked against its JWKS (`staff_jwks_url`), its issuer,
  this deployment's audience and their expiry; the role is one claim (`staff_role_claim`). Such a
  token carries a staff role only.
- Service tokens: each service signs with its own Ed25519 key (EdDSA) for one audience, the
  service it calls, for at most SERVICE_TOKEN_MAX_SECONDS. A service knows the public keys of the
  services allowed to call it (`service_callers`), so a token signed by any other key, or meant for
  another service, is refused.
- Partner sessions: partner-notification signs, with its own service key, an hour's token naming
  the partner, for the services partners talk to (PARTNER_SESSION_AUDIENCE).

Partner API tokens (opaque, with a prefix) are partner-notification's own business.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tsunagu_servicehost.errors import needs_token
from tsunagu_servicehost.settings import ServiceSettings

log = logging.getLogger("tsunagu.servicehost.auth")

SERVICE_TOKEN_SECONDS = 60
SERVICE_TOKEN_MAX_SECONDS = 300
"""A service token living longer than this is refused, whoever signed it."""
PARTNER_SESSION_SECONDS = 3600
PARTNER_SESSION_AUDIENCE = ("housing-support",)
"""The services that act for a partner on a partner session."""
PARTNER_SESSION_ISSUER = "partner-notification"
"""The one service that knows partners (by their API tokens) and vouches for them."""
_CLOCK_SKEW_S = 30
VERIFIED_FOR_S = 60.0
"""How long a verified token is taken as verified, at most (never past its expiry)."""
VERIFIED_TOKENS = 4096
"""Verified tokens remembered at once, at most."""


class Role(StrEnum):
    COUNTER = "counter"          # counter staff of any division
    COORDINATOR = "coordinator"  # 自立相談支援: routes, chases, closes
    COUNCIL = "council"          # housing support council members
    PARTNER = "partner"          # a Team Zama partner organisation
    OPS = "ops"                  # operations
    SERVICE = "service"          # another Tsunagu service, for internal calls


STAFF_ROLES = frozenset({Role.COUNTER, Role.COORDINATOR, Role.COUNCIL, Role.OPS})
"""The roles the staff identity provider may give; never a service's or a partner's."""


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    partner_id: UUID | None = None


class TokenRefused(Exception):
    """The token proves nothing: bad signature, wrong issuer or audience, expired, unknown key."""


class NoStaffRole(TokenRefused):
    """A valid staff token that names no staff role, or more than one."""


class IssuerUnavailable(Exception):
    """The staff identity provider's keys cannot be read now; nothing is wrong with the token."""


# keys -------------------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_signing_key() -> tuple[str, str]:
    """A new Ed25519 key pair as (private, public), each the base64url of its 32 raw bytes."""
    key = Ed25519PrivateKey.generate()
    return _b64(key.private_bytes_raw()), public_half(_b64(key.private_bytes_raw()))


def public_half(private: str) -> str:
    return _b64(Ed25519PrivateKey.from_private_bytes(_unb64(private)).public_key().public_bytes_raw())


def private_key(encoded: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_unb64(encoded))


def public_key(encoded: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(encoded))


def jwks_of(private: str, kid: str) -> dict:
    """The JWKS publishing the public half of an Ed25519 key (for a development issuer)."""
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": public_half(private), "kid": kid, "use": "sig",
                      "alg": "EdDSA"}]}


def staff_token(private: str, *, kid: str, issuer: str, audience: str, subject: str, role: Role,
                role_claim: str = "tsunagu_role", ttl_seconds: int = 12 * 3600) -> str:
    """A staff token as an identity provider would issue it (development issuer and tests)."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, role_claim: role.value, "iat": now,
              "exp": now + ttl_seconds}
    return jwt.encode(claims, private_key(private), algorithm="EdDSA", headers={"kid": kid})


# signing ----------------------------------------------------------------------------------------

class ServiceSigner:
    """Signs this service's own tokens with its private key."""

    def __init__(self, name: str, private: str):
        self.name = name
        self._key = private_key(private) if private else None

    def _sign(self, claims: dict) -> str:
        if self._key is None:
            raise RuntimeError(f"{self.name} has no signing key (TSUNAGU_SERVICE_SIGNING_KEY)")
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.name})

    def for_service(self, audience: str, ttl_seconds: int = SERVICE_TOKEN_SECONDS) -> str:
        """A token proving this service calls `audience`, for a minute."""
        now = int(time.time())
        return self._sign({"iss": self.name, "sub": f"service:{self.name}", "aud": audience,
                           "role": Role.SERVICE.value, "iat": now, "exp": now + ttl_seconds})

    def partner_session(self, partner_id: UUID, ttl_seconds: int = PARTNER_SESSION_SECONDS) -> str:
        now = int(time.time())
        return self._sign({"iss": self.name, "sub": f"partner:{partner_id}", "aud": list(PARTNER_SESSION_AUDIENCE),
                           "role": Role.PARTNER.value, "partner_id": str(partner_id), "iat": now,
                           "exp": now + ttl_seconds})


# verifying --------------------------------------------------------------------------------------

class _FileJwks:
    """A JWKS in a local file (the development issuer's): PyJWKClient reads http(s) only. Read again
    when a token names a key it does not hold, so a rotated development key is picked up, but at
    most once per REREAD_S: tokens with made-up key ids do not make every request read the disk."""

    REREAD_S = 30.0

    def __init__(self, path: Path):
        self.path = path
        self._keys: jwt.PyJWKSet | None = None
        self._read_at = float("-inf")

    def held_key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key already read for `kid`, without touching the disk; None to read it (`signing_key`)."""
        return next((key for key in self._keys.keys if key.key_id == kid), None) if self._keys else None

    def signing_key(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        for attempt in range(2):
            if attempt and time.monotonic() - self._read_at < self.REREAD_S:
                break
            if self._keys is None or attempt:
                self._read_at = time.monotonic()
                try:
                    self._keys = jwt.PyJWKSet.from_dict(json.loads(self.path.read_text()))
                except (OSError, ValueError, jwt.PyJWTError) as exc:
                    raise IssuerUnavailable(f"the staff JWKS file cannot be read ({type(exc).__name__})") from None
            for key in self._keys.keys:
                if key.key_id == kid:
                    return key
        raise TokenRefused("no key of the staff issuer has this token's kid")


class _UrlJwks:
    def __init__(self, url: str):
        self.client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)

    def held_key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for `kid` from the client's cache while it is fresh, without fetching; None to fetch."""
        cached = self.client.jwk_set_cache.get() if self.client.jwk_set_cache is not None else None
        return next((key for key in cached.keys if key.key_id == kid), None) if cached else None

    def signing_key(self, token: str) -> jwt.PyJWK:
        try:
            return self.client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the staff JWKS cannot be fetched ({type(exc).__name__})") from None
        except jwt.PyJWKClientError as exc:
            raise TokenRefused(str(exc)) from None


class TokenVerifier:
    """Checks bearer tokens for one service; built when the application is, connects to nothing."""

    def __init__(self, name: str, settings: ServiceSettings):
        self.name = name
        self.callers = {caller: public_key(key) for caller, key in settings.service_callers.items()}
        self.staff_issuer = settings.staff_issuer
        self.staff_audience = settings.staff_audience
        self.staff_algorithms = list(settings.staff_algorithms)
        self.role_claim = settings.staff_role_claim
        self._verified: dict[str, tuple[Principal, float]] = {}
        """Token → (its principal, until when it counts without being checked again)."""
        url = settings.staff_jwks_url
        if not url:
            self._jwks = None
        elif url.startswith("file://"):
            self._jwks = _FileJwks(Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)))
        else:
            self._jwks = _UrlJwks(url)

    async def read(self, token: str) -> Principal:
        """The token's principal. A token verified in the last VERIFIED_FOR_S seconds is not verified
        again while it is valid: a counter's or a service's token comes with every request, and its
        signature check was a good part of a short request's CPU."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None and now < known[1]:
            return known[0]
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWT ({type(exc).__name__})") from None
        issuer = claims.get("iss")
        principal = self._service_token(token, issuer) if issuer in self.callers else await self._staff_token(token)
        # Verified: remembered no longer than the token's own validity (as the check above allows it,
        # skew included) and VERIFIED_FOR_S, so a key the issuer withdraws stops counting soon.
        self._verified.pop(token, None)
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the one remembered longest
        self._verified[token] = (principal, min(now + VERIFIED_FOR_S, claims["exp"] + _CLOCK_SKEW_S))
        return principal

    def _service_token(self, token: str, issuer: str) -> Principal:
        try:
            claims = jwt.decode(token, self.callers[issuer], algorithms=["EdDSA"], audience=self.name, issuer=issuer,
                                leeway=_CLOCK_SKEW_S, options={"require": ["exp", "iat", "sub", "aud", "role"]})
            role = Role(claims["role"])
        except (jwt.PyJWTError, ValueError) as exc:
            raise TokenRefused(f"service token refused ({type(exc).__name__})") from None
        lifetime = claims["exp"] - claims["iat"]
        if role is Role.SERVICE and lifetime <= SERVICE_TOKEN_MAX_SECONDS and claims["sub"] == f"service:{issuer}":
            return Principal(subject=claims["sub"], role=Role.SERVICE)
        if (role is Role.PARTNER and issuer == PARTNER_SESSION_ISSUER and lifetime <= PARTNER_SESSION_SECONDS
                and claims.get("partner_id")):
            try:
                return Principal(subject=claims["sub"], role=Role.PARTNER, partner_id=UUID(claims["partner_id"]))
            except ValueError:
                pass
        raise TokenRefused("a service token must be short-lived and name its own service, or a partner")

    async def _staff_token(self, token: str) -> Principal:
        if self._jwks is None or not self.staff_issuer or not self.staff_audience:
            raise TokenRefused("no staff identity provider is configured")
        # A key already held is used at once: a worker thread (for the disk or the network) per
        # request cost about 13% of intake's CPU at 30 consultations/s.
        key = self._jwks.held_key(jwt.get_unverified_header(token).get("kid"))
        if key is None:
            key = await asyncio.to_thread(self._jwks.signing_key, token)
        try:
            claims = jwt.decode(token, key, algorithms=self.staff_algorithms, audience=self.staff_audience,
                                issuer=self.staff_issuer, leeway=_CLOCK_SKEW_S,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"staff token refused ({type(exc).__name__})") from None
        return Principal(subject=claims["sub"], role=staff_role(claims, self.role_claim))


def staff_role(claims: dict, role_claim: str) -> Role:
    """The one staff role a verified staff token's `role_claim` names (a string, or a list holding exactly
    one staff role); NoStaffRole otherwise."""
    granted = claims.get(role_claim)
    roles = {granted} if isinstance(granted, str) else set(granted) if isinstance(granted, list) else set()
    staff = [role for role in STAFF_ROLES if role.value in roles]
    if len(staff) != 1:
        raise NoStaffRole(f"a staff token names exactly one staff role in `{role_claim}`")
    return staff[0]


_UNAUTHENTICATED = {"message_ja": "認証が必要です。", "message_en": "A bearer token is required."}
_INVALID = {"message_ja": "トークンが無効です。", "message_en": "The token is invalid or expired."}
_UNAVAILABLE = {"message_ja": "認証基盤に接続できません。しばらくしてから再度お試しください。",
                "message_en": "The identity provider's keys cannot be read now."}


async def authenticate(verifier: TokenVerifier, token: str) -> Principal:
    """The token's principal, or the HTTP error a person reads (401, or 503 while the issuer is away)."""
    try:
        return await verifier.read(token)
    except TokenRefused as exc:
        log.info("token refused: %s", exc)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=_INVALID,
                            headers={"WWW-Authenticate": "Bearer"}) from None
    except IssuerUnavailable as exc:
        log.warning("staff tokens cannot be checked: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=_UNAVAILABLE,
                            headers={"Retry-After": "5"}) from None


_bearer = HTTPBearer(auto_error=False, description="トークン (Bearer token) with a role")


def require(*roles: Role):
    """A FastAPI dependency admitting only the given roles; the routes that depend on it document 401 and 403."""
    allowed = set(roles)

    async def principal(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=_UNAUTHENTICATED,
                                headers={"WWW-Authenticate": "Bearer"})
        who = await authenticate(request.app.state.runtime.tokens, credentials.credentials)
        if who.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail={
                "message_ja": "この操作を行う権限がありません。",
                "message_en": f"The {who.role.value} role may not do this."})
        return who

    return needs_token(principal, (role.value for role in roles))
