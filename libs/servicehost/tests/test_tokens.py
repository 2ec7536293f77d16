"""Bearer tokens are checked against public keys only: staff tokens against the identity provider's
JWKS, service tokens against the public keys of the services allowed to call."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import anyio.to_thread
import asyncio
import jwt
import pytest

from tsunagu_servicehost.auth import (
    Role, ServiceSigner, TokenRefused, TokenVerifier, jwks_of, new_signing_key, private_key, public_half, staff_token,
)
from tsunagu_servicehost.settings import ServiceSettings

ISSUER, AUDIENCE, KID = "https://idp.city.example/realms/staff", "tsunagu", "key-1"
STAFF_KEY = new_signing_key()[0]
PARTNERS_KEY, INTAKE_KEY = new_signing_key()[0], new_signing_key()[0]


@pytest.fixture
def jwks_file(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(STAFF_KEY, KID)))
    return path.as_uri()


def verifier(jwks_url: str, name: str = "intake", **changes) -> TokenVerifier:
    settings = ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused",
                               staff_issuer=ISSUER, staff_audience=AUDIENCE, staff_jwks_url=jwks_url,
                               **{"service_callers": {"partner-notification": public_half(PARTNERS_KEY)}} | changes)
    return TokenVerifier(name, settings)


def signed(claims: dict, key: str = STAFF_KEY, kid: str = KID) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "staff-7", "iat": now, "exp": now + 600} | claims,
                      private_key(key), algorithm="EdDSA", headers={"kid": kid})


async def test_a_staff_token_from_the_identity_provider_gives_its_role(jwks_file):
    token = staff_token(STAFF_KEY, kid=KID, issuer=ISSUER, audience=AUDIENCE, subject="staff-7", role=Role.COUNCIL)

    who = await verifier(jwks_file).read(token)

    assert (who.subject, who.role) == ("staff-7", Role.COUNCIL)


async def test_the_role_may_come_as_a_list_holding_one_staff_role(jwks_file):
    who = await verifier(jwks_file, staff_role_claim="roles").read(signed({"roles": ["offline_access", "ops"]}))

    assert who.role is Role.OPS


@pytest.mark.parametrize("why, claims, key, kid", [
    ("another issuer", {"iss": "https://elsewhere.example", "tsunagu_role": "coordinator"}, STAFF_KEY, KID),
    ("another audience", {"aud": "another-app", "tsunagu_role": "coordinator"}, STAFF_KEY, KID),
    ("expired", {"exp": int(time.time()) - 120, "tsunagu_role": "coordinator"}, STAFF_KEY, KID),
    ("signed by a key the JWKS does not hold", {"tsunagu_role": "coordinator"}, new_signing_key()[0], KID),
    ("naming a key the JWKS does not hold", {"tsunagu_role": "coordinator"}, STAFF_KEY, "key-2"),
    ("without a role", {}, STAFF_KEY, KID),
    ("giving a service's role", {"tsunagu_role": "service"}, STAFF_KEY, KID),
    ("giving a partner's role", {"tsunagu_role": "partner", "partner_id": str(uuid4())}, STAFF_KEY, KID),
    ("giving two staff roles", {"tsunagu_role": ["counter", "coordinator"]}, STAFF_KEY, KID),
])
async def test_a_staff_token_is_refused_when(why, claims, key, kid, jwks_file):
    with pytest.raises(TokenRefused):
        await verifier(jwks_file).read(signed(claims, key, kid))


async def test_an_hs256_token_is_refused_whatever_secret_signed_it(jwks_file):
    now = int(time.time())
    forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tsunagu_role": "coordinator", "iat": now,
                         "exp": now + 60}, "the-old-deployment-wide-secret-32-characters", algorithm="HS256",
                        headers={"kid": KID})
    with pytest.raises(TokenRefused):
        await verifier(jwks_file).read(forged)


def test_hmac_algorithms_cannot_be_configured_for_staff_tokens():
    with pytest.raises(ValueError, match="public keys only"):
        ServiceSettings(http_port=1, database_url="postgresql://u@h/d", staff_algorithms=["HS256"])


async def test_a_service_token_from_a_caller_for_this_service_names_the_caller(jwks_file):
    token = ServiceSigner("partner-notification", PARTNERS_KEY).for_service("intake")

    who = await verifier(jwks_file).read(token)

    assert (who.subject, who.role) == ("service:partner-notification", Role.SERVICE)


@pytest.mark.parametrize("why, token", [
    ("for another audience", lambda: ServiceSigner("partner-notification", PARTNERS_KEY).for_service("referral")),
    ("expired", lambda: ServiceSigner("partner-notification", PARTNERS_KEY).for_service("intake", ttl_seconds=-120)),
    ("living an hour", lambda: ServiceSigner("partner-notification", PARTNERS_KEY).for_service("intake", 3600)),
    ("minted by the verifier in the caller's name",
     lambda: ServiceSigner("partner-notification", INTAKE_KEY).for_service("intake")),
    ("from a service that is not a caller", lambda: ServiceSigner("referral", new_signing_key()[0]).for_service("intake")),
])
async def test_a_service_token_is_refused_when(why, token, jwks_file):
    with pytest.raises(TokenRefused):
        await verifier(jwks_file).read(token())


async def test_a_partner_session_names_the_partner_for_the_services_partners_talk_to(jwks_file):
    partner_id = uuid4()
    session = ServiceSigner("partner-notification", PARTNERS_KEY).partner_session(partner_id)

    who = await verifier(jwks_file, name="housing-support").read(session)

    assert (who.role, who.partner_id) == (Role.PARTNER, partner_id)
    with pytest.raises(TokenRefused):
        await verifier(jwks_file, name="intake").read(session)


async def test_a_partner_session_from_another_caller_than_partner_notification_is_refused(jwks_file):
    referral_key = new_signing_key()[0]
    session = ServiceSigner("referral", referral_key).partner_session(uuid4())
    trusting_referral = verifier(jwks_file, name="housing-support",
                                 service_callers={"referral": public_half(referral_key)})

    with pytest.raises(TokenRefused):
        await trusting_referral.read(session)


class _Jwks(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


async def test_staff_keys_are_read_from_an_identity_providers_jwks_url():
    _Jwks.body = json.dumps(jwks_of(STAFF_KEY, KID)).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/protocol/openid-connect/certs"
        who = await verifier(url).read(signed({"tsunagu_role": "coordinator"}))
    finally:
        server.shutdown()
        server.server_close()

    assert who.role is Role.COORDINATOR


@pytest.fixture
def worker_threads(monkeypatch) -> list:
    """What is handed to a worker thread (asyncio's or anyio's) while the test runs."""
    handed = []
    to_thread, run_sync = asyncio.to_thread, anyio.to_thread.run_sync

    async def recording_asyncio(func, *args, **kwargs):
        handed.append(func)
        return await to_thread(func, *args, **kwargs)

    async def recording_anyio(func, *args, **kwargs):
        handed.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recording_asyncio)
    monkeypatch.setattr(anyio.to_thread, "run_sync", recording_anyio)
    return handed


async def test_a_staff_key_once_read_from_a_file_checks_the_next_tokens_without_a_worker_thread(jwks_file,
                                                                                               worker_threads):
    tokens = verifier(jwks_file)
    await tokens.read(signed({"tsunagu_role": "counter"}))
    read_the_file = len(worker_threads)

    who = await tokens.read(signed({"tsunagu_role": "counter", "sub": "staff-8"}))

    assert read_the_file == 1
    assert len(worker_threads) == read_the_file
    assert (who.subject, who.role) == ("staff-8", Role.COUNTER)


async def test_a_staff_key_once_fetched_from_a_url_checks_the_next_tokens_without_a_worker_thread(worker_threads):
    _Jwks.body = json.dumps(jwks_of(STAFF_KEY, KID)).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tokens = verifier(f"http://127.0.0.1:{server.server_address[1]}/certs")
        await tokens.read(signed({"tsunagu_role": "counter"}))
        fetched = len(worker_threads)
        who = await tokens.read(signed({"tsunagu_role": "counter", "sub": "staff-8"}))
    finally:
        server.shutdown()
        server.server_close()

    assert fetched == 1
    assert len(worker_threads) == fetched
    assert who.subject == "staff-8"


async def test_a_token_naming_a_key_not_yet_held_still_reads_the_rotated_jwks(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(STAFF_KEY, KID)))
    tokens = verifier(path.as_uri())
    await tokens.read(signed({"tsunagu_role": "counter"}))
    rotated = new_signing_key()[0]
    path.write_text(json.dumps({"keys": jwks_of(STAFF_KEY, KID)["keys"] + jwks_of(rotated, "key-2")["keys"]}))
    tokens._jwks._read_at = float("-inf")  # the reread interval has passed

    who = await tokens.read(signed({"tsunagu_role": "ops"}, key=rotated, kid="key-2"))

    assert who.role is Role.OPS


def test_a_service_refuses_to_serve_without_a_staff_identity_provider():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUNAGU_")} | {
        "TSUNAGU_HTTP_PORT": "1", "TSUNAGU_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
        "TSUNAGU_KAFKA_USERNAME": "tsunagu-referral", "TSUNAGU_KAFKA_PASSWORD": "unused"}
    refused = subprocess.run([sys.executable, "-m", "tsunagu_referral", "serve"], env=env, capture_output=True,
                             text=True, timeout=60)

    assert refused.returncode != 0
    assert "TSUNAGU_STAFF_ISSUER, TSUNAGU_STAFF_JWKS_URL, TSUNAGU_STAFF_AUDIENCE" in refused.stderr


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("tsunagu_servicehost.auth.time.time", clock)
    return clock


@pytest.fixture
def verifications(monkeypatch) -> list:
    """The signature checks made: a remembered token makes none."""
    made = []
    real = jwt.decode

    def counting(token, key=None, *args, **kwargs):
        if key is not None:
            made.append(token)
        return real(token, key, *args, **kwargs)

    monkeypatch.setattr("tsunagu_servicehost.auth.jwt.decode", counting)
    return made


async def test_a_token_verified_once_is_not_verified_again_for_a_minute(jwks_file, clock, verifications):
    check, token = verifier(jwks_file), signed({"tsunagu_role": "counter"})

    first = await check.read(token)
    clock.now += 59
    again = await check.read(token)
    clock.now += 2
    later = await check.read(token)

    assert first == again == later and first.role is Role.COUNTER
    assert len(verifications) == 2, "verified, remembered for a minute, verified again"


async def test_a_token_is_remembered_no_longer_than_it_is_valid(jwks_file, clock, verifications):
    check = verifier(jwks_file)
    token = signed({"tsunagu_role": "counter", "exp": int(clock.now) + 5})
    await check.read(token)

    clock.now += 5 + 30 + 1  # past its expiry and the clock skew the check allows, within the minute
    await check.read(token)  # (the signature library's own clock still finds it valid)

    assert len(verifications) == 2, "checked again once it would have expired"


async def test_a_forged_copy_of_a_remembered_token_is_still_refused(jwks_file):
    check, token = verifier(jwks_file), signed({"tsunagu_role": "counter"})
    await check.read(token)
    header, payload, _ = token.split(".")
    promoted = jwt.api_jws.base64url_encode(json.dumps(
        json.loads(jwt.api_jws.base64url_decode(payload)) | {"tsunagu_role": "coordinator"}).encode()).decode()

    with pytest.raises(TokenRefused):
        await check.read(f"{header}.{promoted}.{token.split('.')[2]}")
