"""The resource server's token check, one refusal per test, with real signed tokens."""

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwk, jwt
from joserfc.jwk import ECKey, RSAKey

from service.auth.clients import InMemoryClientStore, new_client
from service.auth.jwks import http_jwks_fetcher
from service.auth.keys import InMemoryKeyStore, ServiceKeys
from service.auth.verify import (
    MAX_AUTHORIZATION_LENGTH,
    AccessContext,
    BuiltinIssuer,
    InvalidToken,
    KeysUnavailable,
    TokenVerifier,
    TrustedIssuer,
    bearer_token,
)
from tests.auth.conftest import (
    CREATED,
    NOW,
    FakeClock,
    JwksServer,
    b64,
    public_jwks,
    sign,
    unsigned,
)

ISSUER = "https://idp.example/realms/clinic"
AUDIENCE = "https://careplan.example/fhir"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service-account-1",
        "client_id": "ehr-connector",
        "scope": "system/CarePlan.rs system/Observation.cruds",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 290,
        "jti": "token-1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def no_fetch(url: str) -> Mapping[str, Any]:
    raise AssertionError(f"no key fetch expected, got one for {url}")


@pytest.fixture
def inline_verifier(issuer_key: RSAKey, clock: FakeClock) -> TokenVerifier:
    issuer = TrustedIssuer(issuer=ISSUER, audience=AUDIENCE, jwks=public_jwks(issuer_key))
    return TokenVerifier([issuer], fetch=no_fetch, clock=clock)


@pytest.fixture
def remote_verifier(issuer_key: RSAKey, jwks_server: JwksServer, clock: FakeClock) -> TokenVerifier:
    jwks_server.jwks = public_jwks(issuer_key)
    issuer = TrustedIssuer(issuer=ISSUER, audience=AUDIENCE, jwks_uri=jwks_server.url)
    return TokenVerifier([issuer], fetch=http_jwks_fetcher(timeout=0.5), clock=clock)


def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    # The token never travels in the exception.
    assert token not in str(caught.value) and token not in repr(caught.value)
    assert caught.value.__cause__ is None
    return caught.value


def test_a_good_token_gives_its_access_context(
    inline_verifier: TokenVerifier, issuer_key: RSAKey
) -> None:
    access = inline_verifier.verify(sign(issuer_key, claims(patient="p1")))
    assert isinstance(access, AccessContext)
    assert access.issuer == ISSUER
    assert access.client_id == "ehr-connector"
    assert [str(s) for s in access.scopes.scopes] == [
        "system/CarePlan.rs",
        "system/Observation.cruds",
    ]
    assert access.patient == "p1"
    assert access.token_id == "token-1"
    assert access.expires_at == int(NOW) + 290


def test_client_id_falls_back_to_sub(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    access = inline_verifier.verify(sign(issuer_key, claims(client_id=None)))
    assert access.client_id == "service-account-1"


def test_es256_and_rs384_tokens_verify(clock: FakeClock) -> None:
    es256 = jwk.generate_key("EC", "P-256", parameters={"kid": "ec"})
    rsa = jwk.generate_key("RSA", 2048, parameters={"kid": "rs384"})
    issuer = TrustedIssuer(issuer=ISSUER, audience=AUDIENCE, jwks=public_jwks(es256, rsa))
    verifier = TokenVerifier([issuer], fetch=no_fetch, clock=clock)
    assert verifier.verify(sign(es256, claims())).client_id == "ehr-connector"
    assert verifier.verify(sign(rsa, claims(), alg="RS384")).client_id == "ehr-connector"


def test_unsigned_alg_none_is_refused_before_any_key_lookup(
    remote_verifier: TokenVerifier, jwks_server: JwksServer
) -> None:
    error = refused(remote_verifier, unsigned(claims(), kid="issuer-1"))
    assert error.reason == "signing algorithm not allowed"
    assert jwks_server.requests == 0


def test_hs256_signed_with_the_public_key_is_refused_before_any_key_lookup(
    remote_verifier: TokenVerifier, jwks_server: JwksServer, issuer_key: RSAKey
) -> None:
    secret = issuer_key.as_pem(private=False)
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'kid': 'issuer-1'}).encode())}."
        f"{b64(json.dumps(claims()).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    error = refused(remote_verifier, f"{signing_input}.{b64(mac)}")
    assert error.reason == "signing algorithm not allowed"
    assert jwks_server.requests == 0


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(
    inline_verifier: TokenVerifier, stranger_key: RSAKey
) -> None:
    assert refused(inline_verifier, sign(stranger_key, claims())).reason == (
        "signature does not verify"
    )


def test_a_tampered_payload_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    header, _, signature = sign(issuer_key, claims()).split(".")
    forged = b64(json.dumps(claims(scope="system/*.cruds")).encode())
    assert refused(inline_verifier, f"{header}.{forged}.{signature}").reason == (
        "signature does not verify"
    )


def test_a_key_of_the_wrong_type_for_the_algorithm_is_refused(
    clock: FakeClock, client_key: ECKey
) -> None:
    # The issuer publishes an EC key; a token claims RS256 with its kid.
    issuer = TrustedIssuer(issuer=ISSUER, audience=AUDIENCE, jwks=public_jwks(client_key))
    verifier = TokenVerifier([issuer], fetch=no_fetch, clock=clock)
    token = sign(client_key, claims(), alg="ES384")
    _, payload, signature = token.split(".")
    rs_header = b64(json.dumps({"alg": "RS256", "kid": "client-1"}).encode())
    assert refused(verifier, f"{rs_header}.{payload}.{signature}").reason == (
        "signature does not verify"
    )


def test_unknown_kid_is_refused(inline_verifier: TokenVerifier, issuer_key_2: RSAKey) -> None:
    assert refused(inline_verifier, sign(issuer_key_2, claims())).reason == "unknown key id"


def test_token_without_kid_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = jwt.encode({"alg": "RS256"}, claims(), issuer_key)
    assert refused(inline_verifier, token).reason == "token has no key id"


def test_unknown_kid_refetches_the_jwks_at_most_once_a_minute(
    remote_verifier: TokenVerifier,
    jwks_server: JwksServer,
    issuer_key: RSAKey,
    issuer_key_2: RSAKey,
    clock: FakeClock,
) -> None:
    remote_verifier.verify(sign(issuer_key, claims()))
    assert jwks_server.requests == 1
    unknown = sign(issuer_key_2, claims())
    for _ in range(5):
        assert refused(remote_verifier, unknown).reason == "unknown key id"
    assert jwks_server.requests == 1  # the first fetch was just now: no refetch yet
    clock.advance(61)
    for _ in range(5):
        refused(remote_verifier, sign(issuer_key_2, claims(exp=int(clock.now) + 100)))
    assert jwks_server.requests == 2  # one refetch, then rate-limited again
    assert remote_verifier.verify(sign(issuer_key, claims(exp=int(clock.now) + 100)))
    assert jwks_server.requests == 2  # a known kid never fetches


def test_a_key_the_issuer_adds_is_found_by_the_refetch(
    remote_verifier: TokenVerifier,
    jwks_server: JwksServer,
    issuer_key: RSAKey,
    issuer_key_2: RSAKey,
    clock: FakeClock,
) -> None:
    remote_verifier.verify(sign(issuer_key, claims()))
    jwks_server.jwks = public_jwks(issuer_key, issuer_key_2)  # the issuer rotates
    clock.advance(60)
    access = remote_verifier.verify(sign(issuer_key_2, claims(exp=int(clock.now) + 100)))
    assert access.client_id == "ehr-connector"
    assert jwks_server.requests == 2


def test_expired_token_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = sign(issuer_key, claims(iat=int(NOW) - 400, exp=int(NOW) - 61))
    assert refused(inline_verifier, token).reason == "token expired"


def test_expiry_within_the_skew_is_accepted(
    inline_verifier: TokenVerifier, issuer_key: RSAKey
) -> None:
    token = sign(issuer_key, claims(iat=int(NOW) - 400, exp=int(NOW) - 59))
    assert inline_verifier.verify(token).expires_at == int(NOW) - 59


def test_token_without_exp_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    assert refused(inline_verifier, sign(issuer_key, claims(exp=None))).reason == (
        "token has no expiry"
    )


def test_not_yet_valid_token_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = sign(issuer_key, claims(nbf=int(NOW) + 120))
    assert refused(inline_verifier, token).reason == "token not yet valid"


def test_token_issued_in_the_future_is_refused(
    inline_verifier: TokenVerifier, issuer_key: RSAKey
) -> None:
    token = sign(issuer_key, claims(iat=int(NOW) + 120))
    assert refused(inline_verifier, token).reason == "token issued in the future"


def test_non_numeric_exp_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = sign(issuer_key, claims(exp="tomorrow"))
    assert refused(inline_verifier, token).reason == "malformed exp claim"


def test_wrong_audience_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = sign(issuer_key, claims(aud="https://other.example/fhir"))
    assert refused(inline_verifier, token).reason == "token not meant for this service"


def test_audience_list_containing_this_service_is_accepted(
    inline_verifier: TokenVerifier, issuer_key: RSAKey
) -> None:
    token = sign(issuer_key, claims(aud=["https://other.example", AUDIENCE]))
    assert inline_verifier.verify(token).issuer == ISSUER


def test_wrong_issuer_is_refused(inline_verifier: TokenVerifier, issuer_key: RSAKey) -> None:
    token = sign(issuer_key, claims(iss="https://evil.example"))
    assert refused(inline_verifier, token).reason == "issuer not trusted"


def test_huge_token_is_refused_unparsed(inline_verifier: TokenVerifier) -> None:
    huge = "a" * 9000 + ".b.c"
    assert refused(inline_verifier, huge).reason == "token too large"


def test_huge_authorization_header_is_refused_cheaply(inline_verifier: TokenVerifier) -> None:
    value = "Bearer " + "a" * 10_000_000
    started = time.perf_counter()
    with pytest.raises(InvalidToken) as caught:
        inline_verifier.verify_authorization(value)
    assert caught.value.reason == "authorization header too large"
    assert time.perf_counter() - started < 0.05
    assert len(str(caught.value)) < 100


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",  # claims are not JSON
        "bm90IGpzb24.e30.c2ln",  # header is not JSON
        "W10.e30.c2ln",  # header is a JSON list
        "eyJhbGciOiJSUzI1NiJ9.W10.c2ln",  # claims are a JSON list
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n",
        "éé.e30.c2ln",
    ],
)
def test_malformed_tokens_are_refused(inline_verifier: TokenVerifier, token: str) -> None:
    assert refused(inline_verifier, token).reason.startswith("malformed")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no bearer token"),
        ("", "no bearer token"),
        ("Bearer", "no bearer token"),
        ("Bearer   ", "no bearer token"),
        ("Basic dXNlcjpwYXNz", "not a bearer token"),
        ("a" * (MAX_AUTHORIZATION_LENGTH + 1), "authorization header too large"),
    ],
)
def test_authorization_header_forms(value: str | None, reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(value)
    assert caught.value.reason == reason


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


def test_issuer_whose_jwks_endpoint_is_down_gives_a_clear_error(
    issuer_key: RSAKey, clock: FakeClock
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issuer = TrustedIssuer(
        issuer=ISSUER, audience=AUDIENCE, jwks_uri=f"http://127.0.0.1:{port}/jwks.json"
    )
    verifier = TokenVerifier([issuer], fetch=http_jwks_fetcher(timeout=0.5), clock=clock)
    with pytest.raises(KeysUnavailable) as caught:
        verifier.verify(sign(issuer_key, claims()))
    assert caught.value.reason == "the issuer's keys could not be fetched"


def test_a_stalled_jwks_endpoint_times_out(
    remote_verifier: TokenVerifier, jwks_server: JwksServer, issuer_key: RSAKey
) -> None:
    jwks_server.stall_seconds = 5
    started = time.monotonic()
    with pytest.raises(KeysUnavailable):
        remote_verifier.verify(sign(issuer_key, claims()))
    assert time.monotonic() - started < 2.5
    # Within the minute, further tokens fail at once instead of waiting again.
    started = time.monotonic()
    with pytest.raises(KeysUnavailable):
        remote_verifier.verify(sign(issuer_key, claims()))
    assert time.monotonic() - started < 0.2
    assert jwks_server.requests == 1


def test_a_jwks_endpoint_answering_an_error_gives_a_clear_error(
    remote_verifier: TokenVerifier, jwks_server: JwksServer, issuer_key: RSAKey
) -> None:
    jwks_server.status = 500
    with pytest.raises(KeysUnavailable):
        remote_verifier.verify(sign(issuer_key, claims()))


def test_keys_fetched_before_survive_a_failed_refetch(
    remote_verifier: TokenVerifier,
    jwks_server: JwksServer,
    issuer_key: RSAKey,
    issuer_key_2: RSAKey,
    clock: FakeClock,
) -> None:
    remote_verifier.verify(sign(issuer_key, claims()))
    jwks_server.status = 503
    clock.advance(61)
    with pytest.raises(KeysUnavailable):  # unknown kid, refetch fails
        remote_verifier.verify(sign(issuer_key_2, claims(exp=int(clock.now) + 100)))
    access = remote_verifier.verify(sign(issuer_key, claims(exp=int(clock.now) + 100)))
    assert access.issuer == ISSUER


def builtin_verifier(
    keys: ServiceKeys, clients: InMemoryClientStore, clock: FakeClock
) -> TokenVerifier:
    builtin = BuiltinIssuer(
        issuer="https://careplan.example/auth", audience=AUDIENCE, keys=keys, clients=clients
    )
    return TokenVerifier(builtin=builtin, fetch=no_fetch, clock=clock)


def test_builtin_issuer_verifies_with_the_key_store_and_no_http(
    clock: FakeClock, client_key: ECKey
) -> None:
    keys = ServiceKeys(InMemoryKeyStore(), retire_after=360)
    clients = InMemoryClientStore()
    clients.add(new_client("app", "system/*.rs", CREATED, jwks=public_jwks(client_key)))
    signing = keys.signing_key(NOW)
    token = sign(
        signing.key, claims(iss="https://careplan.example/auth", client_id="app"), kid=signing.kid
    )
    verifier = builtin_verifier(keys, clients, clock)
    assert verifier.verify(token).client_id == "app"


def test_token_of_a_removed_client_is_refused(clock: FakeClock, client_key: ECKey) -> None:
    keys = ServiceKeys(InMemoryKeyStore(), retire_after=360)
    clients = InMemoryClientStore()
    clients.add(new_client("app", "system/*.rs", CREATED, jwks=public_jwks(client_key)))
    signing = keys.signing_key(NOW)
    token = sign(
        signing.key, claims(iss="https://careplan.example/auth", client_id="app"), kid=signing.kid
    )
    verifier = builtin_verifier(keys, clients, clock)
    clients.remove("app")
    assert refused(verifier, token).reason == "client is no longer registered"
