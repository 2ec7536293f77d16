"""Bearer tokens with a role; each role may do only its own part.

Tokens are JWTs signed with the deployment's secret (HS256). A partner's token also names its
partner id. `make run` writes development tokens for every role to var/dev-tokens.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tsunagu_servicehost.errors import needs_token

ISSUER = "tsunagu"


class Role(StrEnum):
    COUNTER = "counter"          # counter staff of any division
    COORDINATOR = "coordinator"  # 自立相談支援: routes, chases, closes
    COUNCIL = "council"          # housing support council members
    PARTNER = "partner"          # a Team Zama partner organisation
    OPS = "ops"                  # operations
    SERVICE = "service"          # another Tsunagu service, for internal calls


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    partner_id: UUID | None = None


def issue_token(secret: str, subject: str, role: Role, *, partner_id: UUID | None = None,
                ttl_seconds: int = 12 * 3600) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "role": role.value, "iat": now, "exp": now + ttl_seconds}
    if partner_id:
        claims["partner_id"] = str(partner_id)
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(secret: str, token: str) -> Principal:
    if len(secret) < 32:
        raise ValueError("TSUNAGU_AUTH_SECRET is not set (32 characters or more)")
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["exp", "sub"]})
    return Principal(subject=claims["sub"], role=Role(claims["role"]),
                     partner_id=UUID(claims["partner_id"]) if claims.get("partner_id") else None)


_bearer = HTTPBearer(auto_error=False, description="トークン (Bearer token) with a role")


def require(*roles: Role):
    """A FastAPI dependency admitting only the given roles; the routes that depend on it document 401 and 403."""
    allowed = set(roles)

    async def principal(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail={
                "message_ja": "認証が必要です。", "message_en": "A bearer token is required."},
                headers={"WWW-Authenticate": "Bearer"})
        try:
            who = read_token(request.app.state.runtime.settings.auth_secret.get_secret_value(),
                             credentials.credentials)
        except (jwt.PyJWTError, KeyError, ValueError):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail={
                "message_ja": "トークンが無効です。", "message_en": "The token is invalid or expired."},
                headers={"WWW-Authenticate": "Bearer"}) from None
        if who.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail={
                "message_ja": "この操作を行う権限がありません。",
                "message_en": f"The {who.role.value} role may not do this."})
        return who

    return needs_token(principal, (role.value for role in roles))
