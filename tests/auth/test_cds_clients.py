"""The CDS Hooks caller check (service/auth/cds_clients.py) with real signed JWTs: issuers
from CAREPLAN_CDS_CLIENTS, keys inline or from a loopback JWKS, the exact audience, a lifetime
of at most five minutes, a jti used once, jku only when it is the configured JWKS URL."""

import json
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from service.auth.cds_clients import (
    CdsClient,
    CdsClientConfigError,
    CdsJwtVerifier,
    parse_cds_clients,
)
from service.auth.jti_store import InMemoryJtiStore
from service.auth.jwks import http_jwks_fetcher
from service.auth.verify import InvalidToken, KeysUnavailable
from tests.auth.conftest import NOW, FakeClock, JwksServer, public_jwks, sign, unsigned

EHR = "https://ehr.example.org"
URL = "https://cds.example.org/cds-services/flexion-patient-view"


def claims(**extra: Any) -> dict[str, Any]:
    return {
        "iss": EHR,
        "aud": URL,
        "iat": int(NOW),
        "exp": int(NOW) + 240,
        "jti": uuid.uuid4().hex,
        **extra,
    }


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def verifier(client_key: ECKey, clock: FakeClock) -> CdsJwtVerifier:
    clients = [CdsClient(issuer=EHR, jwks=public_jwks(client_key))]
    return CdsJwtVerifier(clients, InMemoryJtiStore(), clock=clock)


def test_a_signed_call_is_accepted_with_its_issuer_and_tenant(
    verifier: CdsJwtVerifier, client_key: ECKey
) -> None:
    token = sign(client_key, claims(tenant="clinic-7"), typ="JWT", alg="ES384")
    caller = verifier.verify(bearer(token), URL)
    assert (caller.issuer, caller.tenant) == (EHR, "clinic-7")
    assert caller.expires_at == NOW + 240


def test_aud_may_be_a_list_holding_the_url(verifier: CdsJwtVerifier, client_key: ECKey) -> None:
    token = sign(client_key, claims(aud=["https://other.example.org", URL]), alg="ES384")
    assert verifier.verify(bearer(token), URL).issuer == EHR


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"iss": "https://stranger.example.org"}, "issuer is not a configured CDS client"),
        ({"aud": "https://cds.example.org/cds-services"}, "aud is not the URL called"),
        ({"aud": URL + "/feedback"}, "aud is not the URL called"),
        ({"exp": int(NOW) - 61}, "token expired"),
        ({"exp": int(NOW) + 600}, "exp more than 5 minutes ahead"),
        ({"exp": None}, "token has no expiry"),
        ({"jti": None}, "token has no usable jti"),
        ({"jti": "x" * 300}, "token has no usable jti"),
        ({"iat": int(NOW) + 3600}, "token issued in the future"),
    ],
)
def test_refused_claims(
    verifier: CdsJwtVerifier, client_key: ECKey, change: dict[str, Any], reason: str
) -> None:
    payload = {k: v for k, v in {**claims(), **change}.items() if v is not None}
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(bearer(sign(client_key, payload, alg="ES384")), URL)
    assert refused.value.reason == reason


def test_a_jti_works_once_per_issuer(verifier: CdsJwtVerifier, client_key: ECKey) -> None:
    payload = claims()
    first = sign(client_key, payload, alg="ES384")
    verifier.verify(bearer(first), URL)
    with pytest.raises(InvalidToken, match="already used"):
        verifier.verify(bearer(first), URL)
    # Signed anew with the same jti: still a replay.
    again = sign(client_key, {**payload, "iat": int(NOW) + 1}, alg="ES384")
    with pytest.raises(InvalidToken, match="already used"):
        verifier.verify(bearer(again), URL)


def test_a_refused_token_does_not_use_up_its_jti(
    verifier: CdsJwtVerifier, client_key: ECKey
) -> None:
    payload = claims()
    with pytest.raises(InvalidToken, match="aud"):
        verifier.verify(bearer(sign(client_key, payload, alg="ES384")), URL + "x")
    assert verifier.verify(bearer(sign(client_key, payload, alg="ES384")), URL).jti


def test_none_and_hmac_are_refused_before_any_key(verifier: CdsJwtVerifier) -> None:
    with pytest.raises(InvalidToken, match="algorithm not allowed"):
        verifier.verify(bearer(unsigned(claims(), kid="client-1")), URL)
    shared = OctKey.generate_key(256, parameters={"kid": "client-1"})
    token = jwt.encode({"alg": "HS256", "kid": "client-1"}, claims(), shared, algorithms=["HS256"])
    with pytest.raises(InvalidToken, match="algorithm not allowed"):
        verifier.verify(bearer(token), URL)


def test_a_signature_by_another_key_is_refused(verifier: CdsJwtVerifier, client_key: ECKey) -> None:
    impostor = ECKey.generate_key("P-384", parameters={"kid": client_key.kid})
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(bearer(sign(impostor, claims(), alg="ES384")), URL)


def test_an_access_token_type_is_not_a_cds_call(
    verifier: CdsJwtVerifier, client_key: ECKey
) -> None:
    token = sign(client_key, claims(), typ="at+jwt", alg="ES384")
    with pytest.raises(InvalidToken, match="token type"):
        verifier.verify(bearer(token), URL)


def test_missing_or_other_scheme_is_refused(verifier: CdsJwtVerifier) -> None:
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(InvalidToken):
            verifier.verify(header, URL)


def test_jku_only_when_it_is_the_configured_jwks_url(
    client_key: ECKey, clock: FakeClock, jwks_server: JwksServer
) -> None:
    jwks_server.jwks = public_jwks(client_key)
    clients = [CdsClient(issuer=EHR, jwks_uri=jwks_server.url)]
    verifier = CdsJwtVerifier(clients, InMemoryJtiStore(), fetch=http_jwks_fetcher(), clock=clock)
    good = sign(client_key, claims(), alg="ES384", jku=jwks_server.url)
    assert verifier.verify(bearer(good), URL).issuer == EHR
    elsewhere = sign(client_key, claims(), alg="ES384", jku="https://attacker.example/jwks")
    with pytest.raises(InvalidToken, match="jku"):
        verifier.verify(bearer(elsewhere), URL)
    assert jwks_server.requests == 1  # the token's jku was never fetched


def test_jku_with_inline_keys_is_refused(verifier: CdsJwtVerifier, client_key: ECKey) -> None:
    token = sign(client_key, claims(), alg="ES384", jku="https://ehr.example.org/jwks")
    with pytest.raises(InvalidToken, match="jku"):
        verifier.verify(bearer(token), URL)


def test_unreachable_keys_say_so(client_key: ECKey, clock: FakeClock) -> None:
    clients = [CdsClient(issuer=EHR, jwks_uri="http://127.0.0.1:9/jwks.json")]
    verifier = CdsJwtVerifier(
        clients, InMemoryJtiStore(), fetch=http_jwks_fetcher(timeout=1), clock=clock
    )
    with pytest.raises(KeysUnavailable):
        verifier.verify(bearer(sign(client_key, claims(), alg="ES384")), URL)


def test_configuration_is_checked(client_key: ECKey) -> None:
    jwks = public_jwks(client_key)
    assert parse_cds_clients("") == []
    parsed = parse_cds_clients(json.dumps([{"issuer": EHR, "jwks": jwks}]))
    assert parsed[0].issuer == EHR
    for bad in (
        "not json",
        json.dumps({"issuer": EHR}),
        json.dumps([{"issuer": EHR}]),
        json.dumps([{"issuer": EHR, "jwks": jwks, "jwks_uri": "https://x.example/j"}]),
        json.dumps([{"issuer": EHR, "jwks_uri": "http://ehr.example.org/jwks"}]),
        json.dumps([{"issuer": EHR, "jwks": jwks}, {"issuer": EHR, "jwks": jwks}]),
        json.dumps([{"issuer": EHR, "jwks": jwks, "audience": URL}]),
        json.dumps([{"issuer": " ", "jwks": jwks}]),
    ):
        with pytest.raises(CdsClientConfigError):
            parse_cds_clients(bad)
