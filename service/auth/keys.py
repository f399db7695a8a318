"""The service's own signing keys for the access tokens it issues: generation, storage as JWK
JSON, the public JWKS, and rotation.

RS256 with 2048-bit RSA keys: every request verifies a token while a token is signed once per
lifetime, and RSA verification costs about 60 us here against about 140 us for ES256.

Rotation makes a new current key and marks the previous one superseded. A superseded key keeps
verifying, and stays published, until ``retire_after`` seconds after it was superseded (the
longest token lifetime plus the verifiers' clock skew: a token it signed just before then has
expired by that time); then it is dropped.
"""

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from joserfc import jwk
from joserfc.jwk import Key, RSAKey

SIGNING_ALGORITHM = "RS256"
RSA_KEY_BITS = 2048
# Keys change in other processes (rotation by the CLI, another worker): a verifier rereads the
# store when its copy is this old, and for an unknown kid after a second (not for every
# request with a made-up kid).
RELOAD_AFTER_SECONDS = 30.0
RELOAD_FOR_UNKNOWN_KID_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class StoredKey:
    """A signing key as stored: ``private_jwk`` is the private JWK as JSON text."""

    kid: str
    private_jwk: str
    created_at: float
    superseded_at: float | None = None

    def verifies_at(self, now: float, retire_after: float) -> bool:
        return self.superseded_at is None or now < self.superseded_at + retire_after


class KeyStore(Protocol):
    def list_keys(self) -> Sequence[StoredKey]: ...

    def save(self, key: StoredKey) -> None:
        """Insert the key, or replace the one with the same kid."""
        ...

    def delete(self, kid: str) -> None: ...


class InMemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, StoredKey] = {}
        self._lock = threading.Lock()

    def list_keys(self) -> Sequence[StoredKey]:
        with self._lock:
            return list(self._keys.values())

    def save(self, key: StoredKey) -> None:
        with self._lock:
            self._keys[key.kid] = key

    def delete(self, kid: str) -> None:
        with self._lock:
            self._keys.pop(kid, None)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Key
    algorithm: str = SIGNING_ALGORITHM


def generate_key(now: float) -> StoredKey:
    """A new RSA key whose kid is its RFC 7638 thumbprint."""
    key = jwk.generate_key(
        "RSA", RSA_KEY_BITS, parameters={"alg": SIGNING_ALGORITHM, "use": "sig"}, auto_kid=True
    )
    kid = key.kid
    assert kid is not None  # auto_kid sets it
    return StoredKey(kid, json.dumps(key.as_dict(private=True)), created_at=now)


def public_jwk(stored: StoredKey) -> dict[str, Any]:
    """The public half of a stored key, as published."""
    private = json.loads(stored.private_jwk)
    return {
        "kty": "RSA",
        "kid": stored.kid,
        "use": "sig",
        "alg": SIGNING_ALGORITHM,
        "n": private["n"],
        "e": private["e"],
    }


class ServiceKeys:
    """The keys of the built-in issuer over a KeyStore."""

    def __init__(self, store: KeyStore, retire_after: float) -> None:
        self._store = store
        self._retire_after = retire_after
        self._parsed: dict[str, Key] = {}
        self._verifying: dict[str, StoredKey] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def signing_key(self, now: float) -> SigningKey:
        """The current key (the newest not superseded); made when there is none."""
        current = [key for key in self._store.list_keys() if key.superseded_at is None]
        if not current:
            stored = generate_key(now)
            self._store.save(stored)
        else:
            stored = max(current, key=lambda key: (key.created_at, key.kid))
        return SigningKey(stored.kid, self._parse(stored))

    def rotate(self, now: float) -> StoredKey:
        """A new current key; the previous ones are superseded now (if not already)."""
        new = generate_key(now)
        for key in self._store.list_keys():
            if key.superseded_at is None:
                self._store.save(replace(key, superseded_at=now))
        self._store.save(new)
        return new

    def prune(self, now: float) -> list[str]:
        """Deletes the keys retired by ``now``; returns their kids."""
        retired = [
            key.kid
            for key in self._store.list_keys()
            if not key.verifies_at(now, self._retire_after)
        ]
        for kid in retired:
            self._store.delete(kid)
        return retired

    def public_jwks(self, now: float) -> dict[str, Any]:
        """The JWKS to publish: every key that still verifies."""
        keys = sorted(self._store.list_keys(), key=lambda key: (-key.created_at, key.kid))
        return {
            "keys": [public_jwk(key) for key in keys if key.verifies_at(now, self._retire_after)]
        }

    def key_for(self, kid: str, algorithm: str, now: float) -> Key | None:
        """The key that verifies ``kid``'s tokens, or None (unknown or retired); KeySource."""
        if algorithm != SIGNING_ALGORITHM:
            return None
        stored = self._verifying.get(kid)
        age = None if self._loaded_at is None else abs(now - self._loaded_at)
        reload_after = (
            RELOAD_AFTER_SECONDS if stored is not None else RELOAD_FOR_UNKNOWN_KID_AFTER_SECONDS
        )
        if age is None or age >= reload_after:
            with self._lock:
                self._verifying = {key.kid: key for key in self._store.list_keys()}
                self._loaded_at = now
            stored = self._verifying.get(kid)
        if stored is None or not stored.verifies_at(now, self._retire_after):
            return None
        return self._parse(stored)

    def _parse(self, stored: StoredKey) -> Key:
        key = self._parsed.get(stored.kid)
        if key is None:
            key = RSAKey.import_key(json.loads(stored.private_jwk))
            self._parsed[stored.kid] = key
        return key
