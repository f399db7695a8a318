"""The service's signing keys: storage as JWK JSON, the published JWKS, rotation and retirement."""

import json

import pytest
from joserfc import jwk

from service.auth.keys import (
    SIGNING_ALGORITHM,
    InMemoryKeyStore,
    ServiceKeys,
    generate_key,
    public_jwk,
)
from service.auth.verify import BuiltinIssuer, InvalidToken, TokenVerifier
from tests.auth.conftest import NOW, FakeClock, sign

ISSUER = "https://careplan.example/auth"
AUDIENCE = "https://careplan.example/fhir"
LIFETIME = 300
RETIRE_AFTER = LIFETIME + 60


def token_claims(now: float) -> dict[str, object]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "client_id": "app",
        "iat": int(now),
        "exp": int(now) + LIFETIME,
    }


def verifier_for(keys: ServiceKeys, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(
        builtin=BuiltinIssuer(issuer=ISSUER, audience=AUDIENCE, keys=keys), clock=clock
    )


def test_generated_key_round_trips_through_its_stored_json() -> None:
    stored = generate_key(NOW)
    private = jwk.import_key(json.loads(stored.private_jwk))
    assert private.is_private
    assert private.kid == stored.kid
    published = public_jwk(stored)
    assert published["alg"] == SIGNING_ALGORITHM == "RS256"
    assert published["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & published.keys()
    assert jwk.import_key(published).raw_value.key_size == 2048


def test_first_signing_key_is_made_and_then_reused() -> None:
    store = InMemoryKeyStore()
    keys = ServiceKeys(store, RETIRE_AFTER)
    first = keys.signing_key(NOW)
    assert keys.signing_key(NOW + 5).kid == first.kid
    assert [key.kid for key in store.list_keys()] == [first.kid]


def test_public_jwks_publishes_public_halves_only() -> None:
    keys = ServiceKeys(InMemoryKeyStore(), RETIRE_AFTER)
    kid = keys.signing_key(NOW).kid
    jwks = keys.public_jwks(NOW)
    assert [key["kid"] for key in jwks["keys"]] == [kid]
    assert "d" not in jwks["keys"][0]


def test_rotation_signs_with_the_new_key_and_still_publishes_the_old() -> None:
    keys = ServiceKeys(InMemoryKeyStore(), RETIRE_AFTER)
    old = keys.signing_key(NOW).kid
    new = keys.rotate(NOW + 100).kid
    assert keys.signing_key(NOW + 101).kid == new
    assert [key["kid"] for key in keys.public_jwks(NOW + 101)["keys"]] == [new, old]


def test_token_of_the_old_key_verifies_until_retirement_then_fails() -> None:
    clock = FakeClock()
    keys = ServiceKeys(InMemoryKeyStore(), RETIRE_AFTER)
    verifier = verifier_for(keys, clock)
    old = keys.signing_key(clock.now)
    issued_at = clock.now
    token = sign(old.key, token_claims(issued_at), kid=old.kid)
    rotated_at = issued_at + 10
    keys.rotate(rotated_at)

    clock.now = rotated_at + 5
    assert verifier.verify(token).client_id == "app"  # the old key still verifies

    # The token itself expires (with skew) before its key retires ...
    clock.now = issued_at + LIFETIME + 59
    assert verifier.verify(token).client_id == "app"
    # ... and once retired, the key verifies nothing, even a token that claims to be valid.
    long_lived = sign(
        old.key, {**token_claims(issued_at), "exp": int(issued_at) + 10_000}, kid=old.kid
    )
    clock.now = rotated_at + RETIRE_AFTER - 1
    assert verifier.verify(long_lived).client_id == "app"
    clock.now = rotated_at + RETIRE_AFTER
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(long_lived)
    assert caught.value.reason == "unknown key id"
    assert old.kid not in [key["kid"] for key in keys.public_jwks(clock.now)["keys"]]


def test_prune_drops_retired_keys_from_the_store() -> None:
    store = InMemoryKeyStore()
    keys = ServiceKeys(store, RETIRE_AFTER)
    old = keys.signing_key(NOW).kid
    new = keys.rotate(NOW + 10).kid
    assert keys.prune(NOW + 10 + RETIRE_AFTER - 1) == []
    assert keys.prune(NOW + 10 + RETIRE_AFTER) == [old]
    assert [key.kid for key in store.list_keys()] == [new]


def test_a_key_rotated_by_another_process_verifies_here() -> None:
    clock = FakeClock()
    store = InMemoryKeyStore()
    here = ServiceKeys(store, RETIRE_AFTER)
    elsewhere = ServiceKeys(store, RETIRE_AFTER)  # e.g. the CLI on the same database
    verifier = verifier_for(here, clock)
    first = here.signing_key(clock.now)
    verifier.verify(sign(first.key, token_claims(clock.now), kid=first.kid))
    elsewhere.rotate(clock.now)
    new = elsewhere.signing_key(clock.now)
    clock.advance(2)
    token = sign(new.key, token_claims(clock.now), kid=new.kid)
    assert verifier.verify(token).client_id == "app"


def test_verification_refuses_other_algorithms_for_service_keys() -> None:
    keys = ServiceKeys(InMemoryKeyStore(), RETIRE_AFTER)
    kid = keys.signing_key(NOW).kid
    assert keys.key_for(kid, "RS256", NOW) is not None
    assert keys.key_for(kid, "RS384", NOW) is None
