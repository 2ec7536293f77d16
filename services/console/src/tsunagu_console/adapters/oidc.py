"""Staff sign-in at the city's OpenID Connect identity provider: authorization code flow with PKCE.

The console is a confidential (or public) client of the provider. What the flow needs between the
redirect to the provider and its callback (state, nonce, PKCE code verifier, the page asked for)
is kept in a short-lived sealed cookie of the console's own (`Pending`), never on a server.

The callback checks the state, exchanges the code (with the verifier), then verifies two tokens
with the provider's JWKS:

- the ID token proves who signed in to this client: the provider's issuer, audience = our client
  id, the nonce we sent, not expired;
- the access token is what the services check (TSUNAGU_STAFF_ISSUER, TSUNAGU_STAFF_AUDIENCE, the
  role claim): the console checks it the same way (tsunagu_servicehost.auth.staff_role) before it
  shows a role's menus, and keeps it as the session's token for no longer than it lives.

Authlib provides the PKCE challenge, the tokens and the authorization URL; PyJWT (which the
services verify with) verifies the tokens; the HTTP calls use the console's own httpx client.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tsunagu_servicehost.auth import NoStaffRole, Role, staff_role

log = logging.getLogger("tsunagu.console.oidc")

PENDING_SECONDS = 600
"""How long a person may take at the provider before the sign-in has to start again."""
_CLOCK_SKEW_S = 30
_JWKS_REREAD_S = 30.0
_METADATA_SECONDS = 3600.0


@dataclass(frozen=True)
class Pending:
    """One sign-in on its way through the provider."""

    state: str
    nonce: str
    code_verifier: str
    next: str = ""


@dataclass(frozen=True)
class StaffSignIn:
    subject: str
    role: Role
    access_token: str
    expires: int
    """When the access token expires (Unix seconds): the session ends then at the latest."""


class SignInRefused(Exception):
    """The provider's answer proves nothing (or refuses): nobody is signed in."""

    def __init__(self, message_ja: str, message_en: str):
        super().__init__(message_en)
        self.message_ja, self.message_en = message_ja, message_en


class ProviderUnavailable(Exception):
    """The identity provider cannot be reached now; nothing is wrong with the person's sign-in."""


_REFUSED = ("サインインできませんでした。もう一度お試しください。", "The sign-in could not be verified; try again.")
_NO_ROLE = ("このアカウントには、つなぐを使う役割（相談窓口・コーディネーター・居住支援協議会・運用担当）が"
            "割り当てられていません。システム管理者にお問い合わせください。",
            "This account has no Tsunagu staff role (or more than one); ask the administrator.")


class OidcProvider:
    """The city's identity provider as the console's sign-in sees it; connects to nothing until asked."""

    def __init__(self, *, issuer: str, client_id: str, client_secret: str, redirect_url: str, scopes: str,
                 staff_issuer: str, staff_audience: str, role_claim: str, algorithms: list[str],
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None):
        self.issuer = issuer.rstrip("/")
        self.client_id, self._client_secret = client_id, client_secret
        self.redirect_url, self.scopes = redirect_url, scopes
        self.staff_issuer, self.staff_audience = staff_issuer, staff_audience
        self.role_claim, self.algorithms = role_claim, algorithms
        self._timeout, self._transport = timeout, transport
        self._client: httpx.AsyncClient | None = None
        self._metadata: dict | None = None
        self._metadata_at = float("-inf")
        self._keys: jwt.PyJWKSet | None = None
        self._keys_at = float("-inf")

    async def open(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport, follow_redirects=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _get_json(self, url: str) -> dict:
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{url} cannot be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"{url} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ProviderUnavailable(f"{url} did not answer JSON") from None

    async def metadata(self) -> dict:
        """The provider's discovery document, read again after an hour."""
        if self._metadata is None or time.monotonic() - self._metadata_at > _METADATA_SECONDS:
            metadata = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if metadata.get("issuer", "").rstrip("/") != self.issuer:
                raise ProviderUnavailable("the discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(key), str):
                    raise ProviderUnavailable(f"the discovery document has no {key}")
            self._metadata, self._metadata_at = metadata, time.monotonic()
        return self._metadata

    async def start(self, next_path: str = "") -> tuple[str, Pending]:
        """Where to send the browser, and what its callback must match."""
        metadata = await self.metadata()
        pending = Pending(state=generate_token(32), nonce=generate_token(32), code_verifier=generate_token(64),
                          next=next_path)
        url = prepare_grant_uri(
            metadata["authorization_endpoint"], client_id=self.client_id, response_type="code",
            redirect_uri=self.redirect_url, scope=self.scopes, state=pending.state, nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier), code_challenge_method="S256")
        return url, pending

    async def finish(self, pending: Pending, params: dict[str, str]) -> StaffSignIn:
        """The signed-in staff member, from the callback's query parameters; SignInRefused otherwise."""
        if not params.get("state") or params.get("state") != pending.state:
            raise SignInRefused("サインインの手続きが一致しません。もう一度お試しください。",
                                "The sign-in's state does not match; start again.")
        if params.get("error") or not params.get("code"):
            log.info("the identity provider refused the sign-in: %s", str(params.get("error", "no code"))[:64])
            raise SignInRefused("認証基盤でサインインが完了しませんでした。", "The identity provider did not sign you in.")
        tokens = await self._exchange(params["code"], pending.code_verifier)
        id_claims = await self._verify(tokens.get("id_token"), issuer=self.issuer, audience=self.client_id,
                                       require=["exp", "iat", "iss", "aud", "sub", "nonce"])
        if id_claims.get("nonce") != pending.nonce:
            raise SignInRefused(*_REFUSED)
        audience = id_claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and id_claims.get("azp") != self.client_id:
            raise SignInRefused(*_REFUSED)
        access = await self._verify(tokens.get("access_token"), issuer=self.staff_issuer,
                                    audience=self.staff_audience, require=["exp", "iss", "aud", "sub"])
        try:
            role = staff_role(access, self.role_claim)
        except NoStaffRole:
            raise SignInRefused(*_NO_ROLE) from None
        return StaffSignIn(subject=id_claims["sub"], role=role, access_token=tokens["access_token"],
                           expires=int(access["exp"]))

    async def _exchange(self, code: str, code_verifier: str) -> dict:
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_url,
                "code_verifier": code_verifier, "client_id": self.client_id}
        auth = httpx.BasicAuth(self.client_id, self._client_secret) if self._client_secret else None
        try:
            response = await self._client.post(metadata["token_endpoint"], data=form, auth=auth,
                                               headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the token endpoint cannot be reached ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise ProviderUnavailable(f"the token endpoint answered {response.status_code}")
        try:
            tokens = response.json()
        except ValueError:
            tokens = {}
        if response.status_code != 200 or not isinstance(tokens, dict):
            log.info("the token endpoint refused the code: %s %s", response.status_code,
                     str(tokens.get("error", "") if isinstance(tokens, dict) else "")[:64])
            raise SignInRefused(*_REFUSED)
        return tokens

    async def _verify(self, token: object, *, issuer: str, audience: str, require: list[str]) -> dict:
        if not isinstance(token, str) or not token:
            raise SignInRefused(*_REFUSED)
        try:
            key = await self._signing_key(token)
            return jwt.decode(token, key, algorithms=self.algorithms, issuer=issuer, audience=audience,
                              leeway=_CLOCK_SKEW_S, options={"require": require})
        except jwt.PyJWTError as exc:
            log.info("a token from the identity provider was refused (%s)", type(exc).__name__)
            raise SignInRefused(*_REFUSED) from None

    async def _signing_key(self, token: str) -> jwt.PyJWK:
        """The provider's key named by the token's kid; the JWKS is read again when the kid is unknown
        (a rotated key), at most once per _JWKS_REREAD_S."""
        kid = jwt.get_unverified_header(token).get("kid")
        for attempt in range(2):
            stale = time.monotonic() - self._keys_at > _JWKS_REREAD_S
            if self._keys is None or (attempt and stale):
                document = await self._get_json((await self.metadata())["jwks_uri"])
                try:
                    self._keys = jwt.PyJWKSet.from_dict(document)
                except jwt.PyJWTError as exc:
                    raise ProviderUnavailable(f"the provider's JWKS cannot be read ({type(exc).__name__})") from None
                self._keys_at = time.monotonic()
            for key in self._keys.keys:
                if key.key_id == kid:
                    return key
            if not stale:
                break
        raise jwt.InvalidKeyError("no key of the provider has this token's kid")

    async def end_session_url(self) -> str | None:
        """The provider's sign-out page (OpenID Connect RP-Initiated Logout), when its discovery names one,
        sending the browser back to the console's sign-in page."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except ProviderUnavailable:
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        back = httpx.URL(self.redirect_url).copy_with(path="/signin", query=None, fragment=None)
        return str(httpx.URL(endpoint).copy_merge_params({"client_id": self.client_id,
                                                           "post_logout_redirect_uri": str(back)}))
