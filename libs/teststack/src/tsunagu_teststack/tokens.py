"""The test session's token issuers: a staff identity provider and one signing key per service.

As in a deployment, each service gets only its own private key and its callers' public keys
(deploy/stack.toml `callers`); staff tokens are signed by the session's development issuer, whose
JWKS the services read from a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path
from uuid import UUID, uuid4

from tsunagu_servicehost.auth import Role, ServiceSigner, jwks_of, new_signing_key, public_half, staff_token
from tsunagu_teststack.infrastructure import stack_config

STAFF_ISSUER = "tsunagu-test"
STAFF_AUDIENCE = "tsunagu"
STAFF_KID = "tsunagu-test-1"


@cache
def staff_key() -> str:
    return new_signing_key()[0]


@cache
def service_key(service: str) -> str:
    return new_signing_key()[0]


@cache
def staff_jwks_url() -> str:
    """The session issuer's JWKS, written once to a file of the session's own."""
    directory = Path(tempfile.mkdtemp(prefix="tsunagu-jwks-"))
    path = directory / "jwks.json"
    path.write_text(json.dumps(jwks_of(staff_key(), STAFF_KID)))
    os.chmod(path, 0o644)
    return path.as_uri()


def token_env(service: str) -> dict[str, str]:
    """What a service reads to sign its own tokens and check everyone else's."""
    callers = stack_config()["services"][service].get("callers", [])
    return {
        "TSUNAGU_SERVICE_SIGNING_KEY": service_key(service),
        "TSUNAGU_SERVICE_CALLERS": json.dumps({caller: public_half(service_key(caller)) for caller in callers}),
        "TSUNAGU_STAFF_ISSUER": STAFF_ISSUER,
        "TSUNAGU_STAFF_JWKS_URL": staff_jwks_url(),
        "TSUNAGU_STAFF_AUDIENCE": STAFF_AUDIENCE,
    }


def token_settings(service: str) -> dict:
    """token_env as ServiceSettings' keyword arguments, for an application built in the test's process."""
    return {key.removeprefix("TSUNAGU_").lower(): json.loads(value) if key == "TSUNAGU_SERVICE_CALLERS" else value
            for key, value in token_env(service).items()}


def bearer_token(role: Role | str, subject: str | None = None, partner_id: UUID | None = None, *,
                 audience: str = "intake", caller: str = "partner-notification") -> str:
    """A token for `role` as the services under test expect it: staff roles from the session's
    identity provider, a partner's session from partner-notification, a service's token from
    `caller` for `audience`."""
    role = Role(role)
    if role is Role.PARTNER:
        return ServiceSigner("partner-notification", service_key("partner-notification")).partner_session(partner_id or uuid4())
    if role is Role.SERVICE:
        return ServiceSigner(caller, service_key(caller)).for_service(audience)
    return staff_token(staff_key(), kid=STAFF_KID, issuer=STAFF_ISSUER, audience=STAFF_AUDIENCE,
                       subject=subject or f"test-{role.value}", role=role)
