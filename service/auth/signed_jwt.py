"""Signed JWTs (JWS compact form), checked in the order that keeps refusals cheap: size and shape,
then the header's algorithm (before any key is looked up), then the signature with the key the
caller chose, then the time claims. Used for access tokens and for client assertions.

The cryptography is joserfc's; this module only decides what is acceptable. Reasons in
``JwtRejected`` are short fixed texts, never parts of the token.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import CompactSignature, JWSRegistry

# Asymmetric only: "none" and the HMAC family would let a public key act as a shared secret.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
# An access token of a few hundred scopes fits; anything larger is refused before decoding.
MAX_TOKEN_LENGTH = 8192
MAX_KID_LENGTH = 256
CLOCK_SKEW_SECONDS = 60

_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Unknown header parameters are tolerated (issuers add their own); "crit" still binds.
_REGISTRY = JWSRegistry(algorithms=ALLOWED_ALGORITHMS, strict_check_header=False)


class JwtRejected(Exception):
    """A JWT that is not acceptable; ``reason`` is safe to log and to answer with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UnverifiedJwt:
    """A JWT whose shape and algorithm are acceptable but whose signature is not yet checked:
    its claims may only be used to choose the key."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signed: CompactSignature

    @property
    def algorithm(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def parse_unverified(token: str) -> UnverifiedJwt:
    """Size, shape, header and algorithm checks; no key is needed yet."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise JwtRejected("token too large")
    if not _COMPACT.fullmatch(token):
        raise JwtRejected("malformed token")
    try:
        signed = jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
    except (JoseError, ValueError, TypeError):
        raise JwtRejected("malformed token") from None
    header = signed.headers()
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise JwtRejected("malformed token header")
    if header["alg"] not in ALLOWED_ALGORITHMS:
        raise JwtRejected("signing algorithm not allowed")
    if "b64" in header or "crit" in header:
        raise JwtRejected("unsupported token header")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise JwtRejected("malformed key id")
    try:
        claims = json.loads(signed.payload or b"")
    except ValueError:
        raise JwtRejected("malformed token claims") from None
    if not isinstance(claims, dict):
        raise JwtRejected("malformed token claims")
    return UnverifiedJwt(header, claims, signed)


def verify_signature(token: UnverifiedJwt, key: Key) -> None:
    """Checks the signature with ``key`` (whose type and curve must suit the algorithm)."""
    try:
        valid = jws.validate_compact(token.signed, key, registry=_REGISTRY)
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise JwtRejected("signature does not verify")


def check_times(claims: Mapping[str, Any], now: float, skew: float = CLOCK_SKEW_SECONDS) -> None:
    """``exp`` is required and not past; ``nbf`` and ``iat``, when present, not in the future;
    each with ``skew`` seconds of tolerance."""
    exp = _numeric_time(claims, "exp")
    if exp is None:
        raise JwtRejected("token has no expiry")
    if exp <= now - skew:
        raise JwtRejected("token expired")
    nbf = _numeric_time(claims, "nbf")
    if nbf is not None and nbf > now + skew:
        raise JwtRejected("token not yet valid")
    iat = _numeric_time(claims, "iat")
    if iat is not None and iat > now + skew:
        raise JwtRejected("token issued in the future")


def audience_includes(claims: Mapping[str, Any], audience: str) -> bool:
    """Whether ``aud`` is ``audience`` or a list that contains it."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud


def _numeric_time(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtRejected(f"malformed {name} claim")
    return float(value)
