"""Client registration checks and the in-memory client store."""

from typing import Any

import pytest
from joserfc import jwk
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey

from service.auth.clients import ClientRegistrationError, InMemoryClientStore, new_client
from tests.auth.conftest import CREATED, public_jwks


def test_a_valid_registration_keeps_the_scopes_normalized(client_key: ECKey) -> None:
    client = new_client(
        "app", "system/Observation.read  system/CarePlan.rs", CREATED, jwks=public_jwks(client_key)
    )
    assert client.allowed_scopes == "system/Observation.read system/CarePlan.rs"
    assert client.jwks_url is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_id": "has space"}, "client id"),
        ({"client_id": ""}, "client id"),
        ({"scopes": "system/Observation.rs launch"}, "not resource scopes: launch"),
        ({"scopes": "  "}, "no scopes"),
        ({"jwks": None}, "exactly one"),
        ({"jwks_url": "https://app.example/jwks"}, "exactly one"),
        ({"jwks": None, "jwks_url": "http://app.example/jwks"}, "https"),
        ({"jwks": {"keys": []}}, "no usable signing key"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}}, "private key"),
    ],
)
def test_bad_registrations_are_refused(
    client_key: ECKey, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "client_id": "app",
        "scopes": "system/*.rs",
        "jwks": public_jwks(client_key),
        "jwks_url": None,
    }
    arguments.update(kwargs)
    with pytest.raises(ClientRegistrationError, match=message):
        new_client(
            arguments["client_id"],
            arguments["scopes"],
            CREATED,
            jwks=arguments["jwks"],
            jwks_url=arguments["jwks_url"],
        )


def test_a_private_key_in_the_jwks_is_refused() -> None:
    private = jwk.generate_key("EC", "P-256", parameters={"kid": "k"})
    with pytest.raises(ClientRegistrationError, match="private key"):
        new_client("app", "system/*.rs", CREATED, jwks={"keys": [private.as_dict(private=True)]})


def test_a_short_rsa_key_is_not_usable() -> None:
    with pytest.warns(SecurityWarning):
        weak = jwk.generate_key("RSA", 1024, parameters={"kid": "weak"})
    with pytest.raises(ClientRegistrationError, match="no usable signing key"):
        new_client("app", "system/*.rs", CREATED, jwks=public_jwks(weak))


def test_http_jwks_url_is_accepted_only_on_loopback() -> None:
    client = new_client("app", "system/*.rs", CREATED, jwks_url="http://127.0.0.1:9/jwks")
    assert client.jwks_url == "http://127.0.0.1:9/jwks"


def test_store_adds_lists_and_removes(client_key: ECKey) -> None:
    store = InMemoryClientStore()
    jwks = public_jwks(client_key)
    store.add(new_client("b", "system/*.rs", CREATED, jwks=jwks))
    store.add(new_client("a", "system/*.rs", CREATED, jwks=jwks))
    with pytest.raises(ClientRegistrationError, match="already registered"):
        store.add(new_client("a", "system/*.r", CREATED, jwks=jwks))
    assert [client.client_id for client in store.list_clients()] == ["a", "b"]
    assert store.remove("a")
    assert not store.remove("a")
    assert store.get("a") is None
    assert store.get("b") is not None
