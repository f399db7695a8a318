"""The built-in SMART Backend Services token endpoint, with real client assertions."""

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc import jwk, jwt
from joserfc.jwk import ECKey, Key, RSAKey

from service.auth.clients import InMemoryClientStore, new_client
from service.auth.jti_store import InMemoryJtiStore
from service.auth.jwks import http_jwks_fetcher
from service.auth.keys import InMemoryKeyStore, ServiceKeys
from service.auth.token_server import (
    CLIENT_CREDENTIALS,
    JWT_BEARER_ASSERTION,
    OAuthError,
    TokenServer,
)
from service.auth.verify import BuiltinIssuer, TokenVerifier
from tests.auth.conftest import CREATED, NOW, FakeClock, JwksServer, public_jwks, sign, unsigned

ISSUER = "https://careplan.example/auth"
AUDIENCE = "https://careplan.example/fhir"
TOKEN_URL = "https://careplan.example/auth/token"
ALLOWED = "system/CarePlan.cruds system/Observation.rs system/Patient.r"


@dataclass
class Setup:
    server: TokenServer
    clients: InMemoryClientStore
    keys: ServiceKeys
    jti_store: InMemoryJtiStore


@pytest.fixture
def setup(client_key: ECKey, client_rsa_key: RSAKey, jwks_server: JwksServer) -> Setup:
    clients = InMemoryClientStore()
    clients.add(new_client("app", ALLOWED, CREATED, jwks=public_jwks(client_key)))
    jwks_server.jwks = public_jwks(client_rsa_key)
    clients.add(new_client("url-app", ALLOWED, CREATED, jwks_url=jwks_server.url))
    keys = ServiceKeys(InMemoryKeyStore(), retire_after=360)
    jti_store = InMemoryJtiStore()
    server = TokenServer(
        issuer=ISSUER,
        audience=AUDIENCE,
        clients=clients,
        jti_store=jti_store,
        keys=keys,
        fetch=http_jwks_fetcher(timeout=0.5),
    )
    return Setup(server, clients, keys, jti_store)


def assertion(key: Key, client_id: str = "app", **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(NOW) + 240,
        "iat": int(NOW),
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    alg = "ES384" if isinstance(key, ECKey) else "RS384"
    return sign(key, claims, alg=alg)


def form(
    client_assertion: str, scope: str = "system/CarePlan.rs", **overrides: str
) -> dict[str, str]:
    fields = {
        "grant_type": CLIENT_CREDENTIALS,
        "client_assertion_type": JWT_BEARER_ASSERTION,
        "client_assertion": client_assertion,
        "scope": scope,
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value != ""}


def refused(setup: Setup, fields: dict[str, str], error: str, status: int) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        setup.server.issue_token(fields, TOKEN_URL, NOW)
    assert (caught.value.error, caught.value.status) == (error, status)
    secret = fields.get("client_assertion", "")
    assert not secret or secret not in caught.value.description
    return caught.value


def test_a_good_request_gets_a_token_that_the_resource_server_accepts(
    setup: Setup, client_key: ECKey
) -> None:
    answer = setup.server.issue_token(form(assertion(client_key)), TOKEN_URL, NOW)
    assert answer["token_type"] == "bearer"
    assert answer["expires_in"] == 300
    assert answer["scope"] == "system/CarePlan.rs"
    header = jwt.decode(answer["access_token"], setup.keys.signing_key(NOW).key).header
    assert header["kid"] == setup.keys.signing_key(NOW).kid
    verifier = TokenVerifier(
        builtin=BuiltinIssuer(ISSUER, AUDIENCE, setup.keys, setup.clients), clock=FakeClock()
    )
    access = verifier.verify(answer["access_token"])
    assert access.client_id == "app"
    assert access.issuer == ISSUER
    assert [str(s) for s in access.scopes.scopes] == ["system/CarePlan.rs"]
    assert access.expires_at == int(NOW) + 300


def test_access_token_claims(setup: Setup, client_key: ECKey) -> None:
    answer = setup.server.issue_token(form(assertion(client_key)), TOKEN_URL, NOW)
    claims = jwt.decode(answer["access_token"], setup.keys.signing_key(NOW).key).claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == claims["client_id"] == "app"
    assert claims["iat"] == int(NOW)
    assert claims["exp"] == int(NOW) + 300
    assert len(claims["jti"]) == 32


def test_a_client_registered_by_jwks_url_is_fetched(
    setup: Setup, client_rsa_key: RSAKey, jwks_server: JwksServer
) -> None:
    fields = form(assertion(client_rsa_key, "url-app"), scope="system/Patient.r")
    assert setup.server.issue_token(fields, TOKEN_URL, NOW)["scope"] == "system/Patient.r"
    assert jwks_server.requests == 1


def test_requested_scopes_are_granted_within_the_clients(setup: Setup, client_key: ECKey) -> None:
    fields = form(
        assertion(client_key), scope="system/CarePlan.rs system/Observation.cruds system/Task.r"
    )
    answer = setup.server.issue_token(fields, TOKEN_URL, NOW)
    assert answer["scope"] == "system/CarePlan.rs system/Observation.rs"


def test_no_grantable_scope_is_invalid_scope(setup: Setup, client_key: ECKey) -> None:
    fields = form(assertion(client_key), scope="system/Task.cruds patient/CarePlan.r")
    refused(setup, fields, "invalid_scope", 400)


def test_missing_scope_is_invalid_request(setup: Setup, client_key: ECKey) -> None:
    refused(setup, form(assertion(client_key), scope=""), "invalid_request", 400)


def test_wrong_grant_type_is_unsupported(setup: Setup, client_key: ECKey) -> None:
    fields = form(assertion(client_key), grant_type="authorization_code")
    refused(setup, fields, "unsupported_grant_type", 400)


def test_missing_grant_type_is_invalid_request(setup: Setup, client_key: ECKey) -> None:
    refused(setup, form(assertion(client_key), grant_type=""), "invalid_request", 400)


def test_wrong_client_assertion_type_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    fields = form(
        assertion(client_key),
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    )
    refused(setup, fields, "invalid_client", 401)


def test_missing_client_assertion_is_invalid_client(setup: Setup) -> None:
    refused(setup, form(""), "invalid_client", 401)


def test_unknown_client_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    error = refused(setup, form(assertion(client_key, "nobody")), "invalid_client", 401)
    assert error.description == "unknown client"


def test_removed_client_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    setup.clients.remove("app")
    refused(setup, form(assertion(client_key)), "invalid_client", 401)


def test_assertion_signed_by_another_key_is_invalid_client(setup: Setup) -> None:
    impostor = jwk.generate_key("EC", "P-384", parameters={"kid": "client-1"})
    error = refused(setup, form(assertion(impostor)), "invalid_client", 401)
    assert "signature" in error.description


def test_assertion_with_a_kid_the_client_does_not_have_is_invalid_client(setup: Setup) -> None:
    other = jwk.generate_key("EC", "P-384", parameters={"kid": "not-registered"})
    error = refused(setup, form(assertion(other)), "invalid_client", 401)
    assert error.description == "client assertion: unknown kid"


def test_unsigned_assertion_is_invalid_client(setup: Setup) -> None:
    token = unsigned(
        {"iss": "app", "sub": "app", "aud": TOKEN_URL, "exp": int(NOW) + 60, "jti": "x"},
        kid="client-1",
    )
    error = refused(setup, form(token), "invalid_client", 401)
    assert error.description == "client assertion: signing algorithm not allowed"


def test_aud_other_than_the_token_url_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    fields = form(assertion(client_key, aud="https://careplan.example/fhir"))
    error = refused(setup, fields, "invalid_client", 401)
    assert "aud" in error.description


def test_iss_differing_from_sub_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    error = refused(setup, form(assertion(client_key, sub="someone-else")), "invalid_client", 401)
    assert "iss and sub" in error.description


def test_client_id_field_differing_from_the_assertion_is_invalid_client(
    setup: Setup, client_key: ECKey
) -> None:
    refused(setup, form(assertion(client_key), client_id="url-app"), "invalid_client", 401)


def test_exp_more_than_five_minutes_ahead_is_invalid_client(
    setup: Setup, client_key: ECKey
) -> None:
    fields = form(assertion(client_key, exp=int(NOW) + 300 + 61))
    error = refused(setup, fields, "invalid_client", 401)
    assert "5 minutes" in error.description


def test_exp_five_minutes_ahead_is_accepted(setup: Setup, client_key: ECKey) -> None:
    fields = form(assertion(client_key, exp=int(NOW) + 300))
    assert setup.server.issue_token(fields, TOKEN_URL, NOW)["scope"] == "system/CarePlan.rs"


def test_assertion_without_exp_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    refused(setup, form(assertion(client_key, exp=None)), "invalid_client", 401)


def test_expired_assertion_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    fields = form(assertion(client_key, iat=int(NOW) - 400, exp=int(NOW) - 100))
    error = refused(setup, fields, "invalid_client", 401)
    assert error.description == "client assertion: token expired"


def test_assertion_without_jti_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    refused(setup, form(assertion(client_key, jti=None)), "invalid_client", 401)


def test_replayed_jti_is_invalid_client(setup: Setup, client_key: ECKey) -> None:
    token = assertion(client_key, jti="once")
    setup.server.issue_token(form(token), TOKEN_URL, NOW)
    error = refused(setup, form(token), "invalid_client", 401)
    assert error.description == "client assertion already used (jti)"


def test_a_refused_assertion_does_not_use_up_its_jti(setup: Setup, client_key: ECKey) -> None:
    refused(setup, form(assertion(client_key, jti="j1", aud="https://x")), "invalid_client", 401)
    answer = setup.server.issue_token(form(assertion(client_key, jti="j1")), TOKEN_URL, NOW)
    assert answer["scope"] == "system/CarePlan.rs"


def test_the_same_jti_from_two_clients_is_two_assertions(
    setup: Setup, client_key: ECKey, client_rsa_key: RSAKey
) -> None:
    setup.server.issue_token(form(assertion(client_key, jti="shared")), TOKEN_URL, NOW)
    fields = form(assertion(client_rsa_key, "url-app", jti="shared"), scope="system/Patient.r")
    assert setup.server.issue_token(fields, TOKEN_URL, NOW)["scope"] == "system/Patient.r"


def test_jti_store_forgets_a_jti_after_its_assertion_expired() -> None:
    store = InMemoryJtiStore()
    assert store.add_if_absent("app", "j", expires_at=NOW + 60, now=NOW)
    assert not store.add_if_absent("app", "j", expires_at=NOW + 60, now=NOW + 59)
    assert store.add_if_absent("other", "k", expires_at=NOW + 500, now=NOW + 61)
    assert len(store) == 1  # "j" is gone


def test_the_client_keys_url_being_down_is_invalid_client(
    setup: Setup, client_rsa_key: RSAKey, jwks_server: JwksServer
) -> None:
    jwks_server.status = 500
    fields = form(assertion(client_rsa_key, "url-app"), scope="system/Patient.r")
    error = refused(setup, fields, "invalid_client", 401)
    assert error.description == "the client's keys could not be fetched"


def test_oauth_error_json_has_the_rfc6749_members() -> None:
    error = OAuthError("invalid_scope", "none of the requested scopes may be granted")
    assert error.as_json() == {
        "error": "invalid_scope",
        "error_description": "none of the requested scopes may be granted",
    }


def test_jti_store_lets_one_of_many_concurrent_uses_through() -> None:
    store = InMemoryJtiStore()
    start = threading.Barrier(16)
    results: list[bool] = []

    def use() -> None:
        start.wait()
        results.append(store.add_if_absent("app", "same", expires_at=NOW + 60, now=NOW))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]
