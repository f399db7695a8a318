"""CAREPLAN_AUTH_ISSUERS parsing: good entries, defaults, and clear errors."""

import json

import pytest
from joserfc.jwk import RSAKey

from service.auth.keys import InMemoryKeyStore, ServiceKeys
from service.auth.verify import (
    BuiltinIssuer,
    IssuerConfigError,
    TokenVerifier,
    parse_trusted_issuers,
)
from tests.auth.conftest import public_jwks

BASE = "https://careplan.example/fhir"


def test_entries_parse_with_the_default_audience(issuer_key: RSAKey) -> None:
    text = json.dumps(
        [
            {"issuer": "https://kc.example/realms/a", "jwks_uri": "https://kc.example/certs"},
            {"issuer": "https://ehr.example", "jwks": public_jwks(issuer_key), "audience": "x"},
        ]
    )
    issuers = parse_trusted_issuers(text, BASE)
    assert [(i.issuer, i.audience) for i in issuers] == [
        ("https://kc.example/realms/a", BASE),
        ("https://ehr.example", "x"),
    ]


def test_empty_configuration_is_no_issuers() -> None:
    assert parse_trusted_issuers("  ", BASE) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ('{"issuer": "x"}', "expected a JSON list"),
        ('[{"issuer": "https://a"}]', "exactly one of jwks_uri and jwks"),
        (
            '[{"issuer": "https://a", "jwks_uri": "https://a/k", "jwks": {"keys": []}}]',
            "exactly one",
        ),
        ('[{"issuer": "https://a", "jwks_uri": "http://a.example/k"}]', "https"),
        ('[{"issuer": "", "jwks_uri": "https://a/k"}]', "issuer must not be empty"),
        ('[{"issuer": "https://a", "jwks": {"keys": []}}]', "no usable signing key"),
        ('[{"issuer": "https://a", "jwks_uri": "https://a/k", "extra": 1}]', "0.extra"),
        (
            '[{"issuer": "https://a", "jwks_uri": "https://a/k"},'
            ' {"issuer": "https://a", "jwks_uri": "https://a/k2"}]',
            "listed twice",
        ),
    ],
)
def test_bad_configuration_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(IssuerConfigError, match=message) as caught:
        parse_trusted_issuers(text, BASE)
    assert str(caught.value).startswith("trusted issuers: ")


def test_the_builtin_issuer_cannot_also_be_configured(issuer_key: RSAKey) -> None:
    configured = parse_trusted_issuers(
        json.dumps([{"issuer": "https://careplan.example/auth", "jwks": public_jwks(issuer_key)}]),
        BASE,
    )
    builtin = BuiltinIssuer(
        "https://careplan.example/auth", BASE, ServiceKeys(InMemoryKeyStore(), retire_after=360)
    )
    with pytest.raises(IssuerConfigError, match="built-in"):
        TokenVerifier(configured, builtin=builtin)
