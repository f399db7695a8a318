"""Real tokens for the tests: a client registered with the app's built-in authorization server
signs a client assertion with its own key and trades it at the token endpoint, as a hospital's
backend would. Patient-context tokens come from an external issuer the test configures (the
built-in server, SMART Backend Services, has no patient context).
"""

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from joserfc import jwk, jwt
from joserfc.jwk import ECKey, Key, RSAKey

from service.auth.clients import new_client
from service.auth.keys import StoredKey, generate_key
from service.auth.token_server import JWT_BEARER_ASSERTION
from service.usecases.authorization import token_url

DEFAULT_CLIENT = "test-client"
ALL_SCOPES = "system/*.cruds"
# Sends a form to a URL and answers (status, JSON body).
PostForm = Callable[[str, Mapping[str, str]], tuple[int, Any]]


@cache
def client_key() -> ECKey:
    """The test clients' key (EC, cheap to make; one per test session)."""
    return jwk.generate_key("EC", "P-256", parameters={"kid": "test-client-key"})


@cache
def service_key() -> StoredKey:
    """A signing key for the built-in server, made once per session and stored in each test's
    database: generating a 2048-bit RSA key per test would cost more than the test."""
    return generate_key(time.time() - 1)


@cache
def issuer_key() -> RSAKey:
    """The key of the external issuer some tests trust (an EHR's authorization server)."""
    return jwk.generate_key("RSA", 2048, parameters={"kid": "ehr-key-1"})


EXTERNAL_ISSUER = "https://ehr.example.org/auth"


def external_issuers_setting(audience: str) -> str:
    """CAREPLAN_AUTH_ISSUERS trusting EXTERNAL_ISSUER (inline JWKS)."""
    import json

    public = issuer_key().as_dict(private=False)
    return json.dumps(
        [{"issuer": EXTERNAL_ISSUER, "jwks": {"keys": [public]}, "audience": audience}]
    )


def external_token(
    scope: str | None,
    audience: str,
    *,
    patient: str | None = None,
    key: Key | None = None,
    header: Mapping[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A token of EXTERNAL_ISSUER (or signed by ``key``), valid for five minutes; a claim
    given as None is left out."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": EXTERNAL_ISSUER,
        "aud": audience,
        "sub": "ehr-app",
        "client_id": "ehr-app",
        "scope": scope,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    if patient is not None:
        body["patient"] = patient
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    signer = key or issuer_key()
    alg = "RS256" if isinstance(signer, RSAKey) else "ES256"
    full_header = {"alg": alg, "kid": signer.kid, **(header or {})}
    return jwt.encode(full_header, body, signer, algorithms=["RS256", "ES256", "HS256"])


def client_assertion(
    client_id: str, audience: str, key: Key | None = None, **overrides: Any
) -> str:
    """A client assertion (RFC 7523) signed with the client's key."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    signer = key or client_key()
    alg = "RS384" if isinstance(signer, RSAKey) else "ES256"
    return jwt.encode({"alg": alg, "kid": signer.kid}, claims, signer, algorithms=[alg])


class Tokens:
    """Clients and tokens of one app's built-in server. ``post`` sends the token request
    (through a TestClient or over HTTP); ``base`` is the FHIR base URL the app sees."""

    def __init__(self, authorization: Any, post: PostForm, base: str) -> None:
        self.authorization = authorization
        self.post = post
        self.base = base
        self.token_url = token_url(base)
        self._cache: dict[tuple[str, str], str] = {}
        authorization.key_store.save(service_key())

    def register(self, client_id: str, scope: str, key: Key | None = None) -> None:
        public = (key or client_key()).as_dict(private=False)
        client = new_client(client_id, scope, datetime.now(UTC), jwks={"keys": [public]})
        self.authorization.clients.add(client)

    def request(self, client_id: str, requested: str, **form: str) -> tuple[int, Any]:
        """The token endpoint's answer to a well-formed request for ``requested`` scopes
        (``form`` replaces fields)."""
        fields = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER_ASSERTION,
            "client_assertion": client_assertion(client_id, self.token_url),
            "scope": requested,
            **form,
        }
        return self.post(self.token_url, fields)

    def token(self, scope: str = ALL_SCOPES, client_id: str | None = None) -> str:
        """An access token for ``scope``: from a client registered for exactly that scope
        (one per scope), unless ``client_id`` names one already registered."""
        key = (client_id or "", scope)
        if key not in self._cache:
            if client_id is None:
                client_id = f"c-{uuid.uuid5(uuid.NAMESPACE_URL, scope).hex[:16]}"
                if self.authorization.clients.get(client_id) is None:
                    self.register(client_id, scope)
            status, body = self.request(client_id, scope)
            assert status == 200, body
            self._cache[key] = body["access_token"]
        return self._cache[key]

    def header(self, scope: str = ALL_SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scope)}"}
