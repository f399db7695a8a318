"""The built-in authorization server's token endpoint: SMART Backend Services, that is the
OAuth 2.0 client credentials grant (RFC 6749 section 4.4) with the client authenticated by a
JWT it signed (RFC 7523 section 2.2, ``private_key_jwt``).

The client assertion: ``iss`` = ``sub`` = the client id, ``aud`` = the token URL, ``exp``
required and at most five minutes ahead (plus the clock skew), a ``jti`` never used before
within its lifetime, a ``kid`` in the client's registered keys, RS256/RS384/ES256/ES384.
Every problem with it is ``invalid_client`` (RFC 6749 section 5.2). The access token is a JWT
signed with the service's current key, carrying the requested scopes within the client's.
"""

import time
import uuid
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import Key

from service.auth.clients import Client, ClientStore
from service.auth.jti_store import JtiStore
from service.auth.jwks import (
    DEFAULT_REFETCH_INTERVAL_SECONDS,
    JwksFetcher,
    JwksUnavailable,
    RemoteJwks,
    StaticKeys,
    http_jwks_fetcher,
)
from service.auth.keys import ServiceKeys
from service.auth.scopes import grant
from service.auth.signed_jwt import (
    CLOCK_SKEW_SECONDS,
    MAX_KID_LENGTH,
    JwtRejected,
    UnverifiedJwt,
    audience_includes,
    check_times,
    parse_unverified,
    verify_signature,
)

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_SECONDS = 300
DEFAULT_TOKEN_LIFETIME_SECONDS = 300


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: ``error`` is the code, ``status`` the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def as_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description, 400)


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


class TokenServer:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        clients: ClientStore,
        jti_store: JtiStore,
        keys: ServiceKeys,
        fetch: JwksFetcher | None = None,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME_SECONDS,
        skew: float = CLOCK_SKEW_SECONDS,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        """``issuer``: this server's issuer URL (``iss`` of its tokens); ``audience``: the FHIR
        base URL (``aud`` of its tokens)."""
        self._issuer = issuer
        self._audience = audience
        self._clients = clients
        self._jti_store = jti_store
        self._keys = keys
        self._fetch = fetch or http_jwks_fetcher()
        self._token_lifetime = token_lifetime
        self._skew = skew
        self._refetch_interval = refetch_interval
        self._remote_client_keys: dict[str, RemoteJwks] = {}

    @property
    def token_lifetime(self) -> int:
        return self._token_lifetime

    def issue_token(
        self, form: Mapping[str, str], token_url: str, now: float | None = None
    ) -> dict[str, Any]:
        """The token response for a token request's form fields; raises OAuthError."""
        now = time.time() if now is None else now
        grant_type = form.get("grant_type")
        if not grant_type:
            raise invalid_request("grant_type is required")
        if grant_type != CLIENT_CREDENTIALS:
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        client = self._authenticate(form, token_url, now)
        requested = form.get("scope", "")
        if not requested.strip():
            raise invalid_request("scope is required")
        granted = grant(requested, client.allowed_scopes)
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes may be granted")
        scope = " ".join(granted)
        return {
            "access_token": self._access_token(client.client_id, scope, now),
            "token_type": "bearer",
            "expires_in": self._token_lifetime,
            "scope": scope,
        }

    def _authenticate(self, form: Mapping[str, str], token_url: str, now: float) -> Client:
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise invalid_client(f"client_assertion_type must be {JWT_BEARER_ASSERTION}")
        assertion = form.get("client_assertion")
        if not assertion:
            raise invalid_client("client_assertion is required")
        try:
            unverified = parse_unverified(assertion)
        except JwtRejected as rejected:
            raise invalid_client(f"client assertion: {rejected.reason}") from None
        claims = unverified.claims
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or not client_id:
            raise invalid_client("client assertion has no iss")
        if claims.get("sub") != client_id:
            raise invalid_client("client assertion: iss and sub must both be the client id")
        if form.get("client_id") not in (None, client_id):
            raise invalid_client("client_id does not match the client assertion")
        client = self._clients.get(client_id)
        if client is None:
            raise invalid_client("unknown client")
        self._check_signature(client, unverified, now)
        if not audience_includes(claims, token_url):
            raise invalid_client("client assertion: aud must be the token URL")
        try:
            check_times(claims, now, self._skew)
        except JwtRejected as rejected:
            raise invalid_client(f"client assertion: {rejected.reason}") from None
        exp = float(claims["exp"])
        if exp > now + MAX_ASSERTION_LIFETIME_SECONDS + self._skew:
            raise invalid_client("client assertion: exp more than 5 minutes ahead")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_KID_LENGTH:
            raise invalid_client("client assertion: jti is required")
        # Last, so that an assertion refused for another reason does not use up its jti.
        if not self._jti_store.add_if_absent(client_id, jti, exp + self._skew, now):
            raise invalid_client("client assertion already used (jti)")
        return client

    def _check_signature(self, client: Client, unverified: UnverifiedJwt, now: float) -> None:
        kid = unverified.kid
        if kid is None:
            raise invalid_client("client assertion has no kid")
        try:
            key = self._client_key(client, kid, unverified.algorithm, now)
        except JwksUnavailable:
            raise invalid_client("the client's keys could not be fetched") from None
        if key is None:
            raise invalid_client("client assertion: unknown kid")
        try:
            verify_signature(unverified, key)
        except JwtRejected as rejected:
            raise invalid_client(f"client assertion: {rejected.reason}") from None

    def _client_key(self, client: Client, kid: str, algorithm: str, now: float) -> Key | None:
        if client.jwks is not None:
            return StaticKeys(client.jwks).key_for(kid, algorithm, now)
        assert client.jwks_url is not None  # a registration has one or the other
        remote = self._remote_client_keys.get(client.jwks_url)
        if remote is None:
            remote = RemoteJwks(client.jwks_url, self._fetch, self._refetch_interval)
            self._remote_client_keys[client.jwks_url] = remote
        return remote.key_for(kid, algorithm, now)

    def _access_token(self, client_id: str, scope: str, now: float) -> str:
        signing = self._keys.signing_key(now)
        issued_at = int(now)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": issued_at,
            "exp": issued_at + self._token_lifetime,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": signing.algorithm, "kid": signing.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, signing.key, algorithms=[signing.algorithm])
