"""JSON Web Key Sets: which keys of a set may verify signatures, and fetching a remote set with a
cache that refetches on an unknown ``kid`` at most once per interval.

Keys are only ever fetched from a URL that was configured (a trusted issuer, a registered
client), never from a URL named inside a token (``jku``, ``x5u`` are ignored).
"""

import base64
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.jwk import Key

JwksFetcher = Callable[[str], Mapping[str, Any]]

# Public members per key type; anything else in a published key (private parts) is dropped.
_PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}
MIN_RSA_BITS = 2048
DEFAULT_FETCH_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_JWKS_BYTES = 256 * 1024
DEFAULT_REFETCH_INTERVAL_SECONDS = 60.0


class JwksUnavailable(Exception):
    """A key set could not be fetched or is not a key set."""


class FetchDeferred(Exception):
    """Raised by a fetcher that may not block where it was called (an event loop): nothing is
    recorded, so the caller can run the same check again where blocking is allowed."""


class KeySource(Protocol):
    """Where the verification key of a ``kid`` comes from."""

    def key_for(self, kid: str, algorithm: str, now: float) -> Key | None:
        """The public key for ``kid`` usable with ``algorithm``, or None when there is none.
        May raise JwksUnavailable when the keys cannot be had right now."""
        ...


def verification_keys(jwks: Mapping[str, Any]) -> dict[str, tuple[Key, str | None]]:
    """kid -> (public key, its declared ``alg`` or None) for the usable keys of a JWKS.

    Usable: an RSA (at least 2048 bits) or EC key with a ``kid``, not declared for
    encryption. Other entries are skipped, as RFC 7517 section 5 asks for keys not understood.
    """
    keys: dict[str, tuple[Key, str | None]] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        kid, kty, use, alg = (entry.get(name) for name in ("kid", "kty", "use", "alg"))
        if not isinstance(kid, str) or not kid or kty not in _PUBLIC_MEMBERS:
            continue
        if use not in (None, "sig") or (alg is not None and not isinstance(alg, str)):
            continue
        public = {name: entry.get(name) for name in _PUBLIC_MEMBERS[kty]}
        if not all(isinstance(value, str) for value in public.values()):
            continue
        if kty == "RSA" and _modulus_bits(str(public["n"])) < MIN_RSA_BITS:
            continue
        try:
            key = jwk.import_key({name: str(value) for name, value in public.items()})
        except (JoseError, ValueError, TypeError):
            continue
        keys[kid] = (key, alg)
    return keys


def has_private_members(jwks: Mapping[str, Any]) -> bool:
    """Whether any key of the set carries private material (a registration must not)."""
    entries = jwks.get("keys")
    return isinstance(entries, list) and any(
        isinstance(entry, Mapping) and bool({"d", "p", "q", "dp", "dq", "qi", "k"} & entry.keys())
        for entry in entries
    )


def check_jwks_url(url: str) -> None:
    """https, or http to a loopback host only: keys fetched in the clear could be swapped by
    anyone on the path, which would let them sign tokens. Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError("a JWKS URL must be https (http only to a loopback address)")


def http_jwks_fetcher(
    timeout: float = DEFAULT_FETCH_TIMEOUT_SECONDS, max_bytes: int = DEFAULT_MAX_JWKS_BYTES
) -> JwksFetcher:
    """A fetcher over HTTP: GET without redirects, bounded in time and size, JSON with a
    ``keys`` list. Raises JwksUnavailable."""

    def fetch(url: str) -> Mapping[str, Any]:
        deadline = time.monotonic() + timeout
        body = bytearray()
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksUnavailable(f"JWKS answered HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise JwksUnavailable("JWKS too large")
                    if time.monotonic() > deadline:
                        raise JwksUnavailable("JWKS fetch timed out")
        except httpx.HTTPError as error:
            raise JwksUnavailable(f"JWKS fetch failed: {type(error).__name__}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise JwksUnavailable("JWKS is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise JwksUnavailable("JWKS has no keys list")
        return data

    return fetch


class StaticKeys:
    """A key set given inline (configuration, a client's registration)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = verification_keys(jwks)

    def __len__(self) -> int:
        return len(self._keys)

    def key_for(self, kid: str, algorithm: str, now: float) -> Key | None:
        return _suitable(self._keys.get(kid), algorithm)


class RemoteJwks:
    """A key set at a URL, fetched on first use and again when a token names a ``kid`` it
    lacks, at most once per ``refetch_interval`` seconds (a failed fetch counts too), so that
    tokens with made-up key ids cannot turn this service into a flood of outbound requests.
    Keys fetched earlier stay in use when a refetch fails."""

    def __init__(
        self,
        url: str,
        fetch: JwksFetcher,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._refetch_interval = refetch_interval
        self._keys: dict[str, tuple[Key, str | None]] = {}
        self._last_attempt: float | None = None
        self._last_attempt_failed = False
        self._lock = threading.Lock()

    def key_for(self, kid: str, algorithm: str, now: float) -> Key | None:
        known = self._keys.get(kid)
        if known is not None:
            return _suitable(known, algorithm)
        with self._lock:  # one fetch at a time; the others then see its result
            known = self._keys.get(kid)
            if known is None and self._may_fetch(now):
                self._refresh(now)
                known = self._keys.get(kid)
            if known is None and self._last_attempt_failed:
                raise JwksUnavailable("JWKS could not be fetched")
        return _suitable(known, algorithm)

    def _may_fetch(self, now: float) -> bool:
        last = self._last_attempt
        return last is None or now - last >= self._refetch_interval or now < last

    def _refresh(self, now: float) -> None:
        try:
            keys = verification_keys(self._fetch(self.url))
        except FetchDeferred:
            raise
        except Exception:
            # Any failure of the fetcher (network, a bad body) means: no keys now.
            self._last_attempt = now
            self._last_attempt_failed = True
        else:
            self._last_attempt = now
            self._keys = keys
            self._last_attempt_failed = False


def _suitable(entry: tuple[Key, str | None] | None, algorithm: str) -> Key | None:
    if entry is None:
        return None
    key, declared_alg = entry
    if declared_alg is not None and declared_alg != algorithm:
        return None
    return key


def _modulus_bits(n: str) -> int:
    try:
        modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(modulus, "big").bit_length()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
