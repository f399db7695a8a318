"""The resource server's token check: ``Authorization: Bearer <JWT>`` from a trusted issuer.

Order: header size and scheme, token size and shape, algorithm (RS256, RS384, ES256, ES384; the
rest refused before any key lookup), ``iss`` among the trusted issuers, ``kid`` in that issuer's
keys, signature, ``aud``, then ``exp`` (required), ``nbf`` and ``iat`` with 60 s of skew.

Trusted issuers are configured as JSON (``parse_trusted_issuers``); the service's own built-in
issuer is added with ``BuiltinIssuer`` and takes its keys from the key store, not over HTTP.
``InvalidToken.reason`` is a short fixed text: the token never appears in a message or a log.
"""

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from service.auth.clients import ClientStore
from service.auth.jwks import (
    DEFAULT_REFETCH_INTERVAL_SECONDS,
    JwksFetcher,
    JwksUnavailable,
    KeySource,
    RemoteJwks,
    StaticKeys,
    check_jwks_url,
    http_jwks_fetcher,
    verification_keys,
)
from service.auth.keys import ServiceKeys
from service.auth.permissions import Need, Permit, permits, unmet_needs
from service.auth.scopes import ScopeSet
from service.auth.signed_jwt import (
    CLOCK_SKEW_SECONDS,
    JwtRejected,
    audience_includes,
    check_times,
    parse_unverified,
    verify_signature,
)

# "Bearer " and a token of MAX_TOKEN_LENGTH, with room to spare; longer values are refused
# before any parsing.
MAX_AUTHORIZATION_LENGTH = 8300

Clock = Callable[[], float]


class InvalidToken(Exception):
    """No usable token; ``reason`` is safe to log and to send (``error_description``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(InvalidToken):
    """The issuer's keys could not be fetched: the token could not be checked (the issuer's
    fault, not necessarily the token's; a caller may answer 401 or 503)."""


class IssuerConfigError(ValueError):
    """The trusted-issuer configuration cannot be used; the message says where and why."""


class IssuerKeys(BaseModel):
    """An issuer and where its public keys are: exactly one of ``jwks_uri`` and ``jwks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None

    @field_validator("issuer")
    @classmethod
    def _issuer_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("issuer must not be empty")
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri_safe(cls, value: str | None) -> str | None:
        if value is not None:
            check_jwks_url(value)
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.jwks_uri is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_uri and jwks")
        if self.jwks is not None and not verification_keys(self.jwks):
            raise ValueError("jwks has no usable signing key (RSA of 2048+ bits or EC, with a kid)")
        return self


class TrustedIssuer(IssuerKeys):
    """One trusted issuer of access tokens; ``audience`` defaults to this service's FHIR base
    URL."""

    audience: str | None = None


_ISSUER_LIST = TypeAdapter(list[TrustedIssuer])


def parse_trusted_issuers(text: str, default_audience: str) -> list[TrustedIssuer]:
    """The issuers of a JSON list of ``{issuer, jwks_uri | jwks, audience}`` objects (empty
    text: none), each with its audience (``default_audience`` when not given). Raises
    IssuerConfigError."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as error:
        raise IssuerConfigError(f"trusted issuers: not JSON ({error})") from None
    if not isinstance(data, list):
        raise IssuerConfigError("trusted issuers: expected a JSON list of issuer objects")
    try:
        issuers = _ISSUER_LIST.validate_python(data)
    except ValidationError as error:
        raise IssuerConfigError(_describe(error)) from None
    seen: set[str] = set()
    for issuer in issuers:
        if issuer.issuer in seen:
            raise IssuerConfigError(f"trusted issuers: {issuer.issuer!r} is listed twice")
        seen.add(issuer.issuer)
    return [
        issuer if issuer.audience else issuer.model_copy(update={"audience": default_audience})
        for issuer in issuers
    ]


@dataclass(frozen=True)
class BuiltinIssuer:
    """The service's own authorization server as a trusted issuer. With ``clients``, a token
    of a client no longer registered is refused."""

    issuer: str
    audience: str
    keys: ServiceKeys
    clients: ClientStore | None = None


@dataclass(frozen=True)
class AccessContext:
    """Who is calling and what the token allows."""

    issuer: str
    client_id: str
    scopes: ScopeSet
    patient: str | None
    token_id: str | None
    expires_at: int

    def permits(self, need: Need) -> tuple[Permit, ...]:
        """The ways this token allows ``need`` (empty: it does not)."""
        return permits(self.scopes, self.patient, need)

    def unmet(self, needs: Iterable[Need]) -> tuple[Need, ...]:
        return unmet_needs(self.scopes, self.patient, needs)


@dataclass(frozen=True)
class _Issuer:
    audience: str
    keys: KeySource
    clients: ClientStore | None = None


class TokenVerifier:
    def __init__(
        self,
        issuers: Sequence[TrustedIssuer] = (),
        *,
        builtin: BuiltinIssuer | None = None,
        fetch: JwksFetcher | None = None,
        clock: Clock = time.time,
        skew: float = CLOCK_SKEW_SECONDS,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        fetcher = fetch or http_jwks_fetcher()
        self._issuers: dict[str, _Issuer] = {}
        for config in issuers:
            keys: KeySource
            if config.jwks is not None:
                keys = StaticKeys(config.jwks)
            else:
                assert config.jwks_uri is not None  # the model requires one of them
                keys = RemoteJwks(config.jwks_uri, fetcher, refetch_interval)
            audience = config.audience
            if audience is None:
                raise IssuerConfigError(f"issuer {config.issuer!r} has no audience")
            self._issuers[config.issuer] = _Issuer(audience, keys)
        if builtin is not None:
            if builtin.issuer in self._issuers:
                raise IssuerConfigError(
                    f"issuer {builtin.issuer!r} is the built-in one: do not configure it"
                )
            self._issuers[builtin.issuer] = _Issuer(builtin.audience, builtin.keys, builtin.clients)
        self._clock = clock
        self._skew = skew

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._issuers)

    def verify_authorization(self, authorization: str | None) -> AccessContext:
        """Checks an ``Authorization`` header value."""
        return self.verify(bearer_token(authorization))

    def verify(self, token: str) -> AccessContext:
        try:
            return self._verify(token)
        except JwtRejected as rejected:
            raise InvalidToken(rejected.reason) from None

    def _verify(self, token: str) -> AccessContext:
        unverified = parse_unverified(token)
        iss = unverified.claims.get("iss")
        if not isinstance(iss, str) or iss not in self._issuers:
            raise InvalidToken("issuer not trusted")
        issuer = self._issuers[iss]
        kid = unverified.kid
        if kid is None:
            raise InvalidToken("token has no key id")
        now = self._clock()
        try:
            key = issuer.keys.key_for(kid, unverified.algorithm, now)
        except JwksUnavailable:
            raise KeysUnavailable("the issuer's keys could not be fetched") from None
        if key is None:
            raise InvalidToken("unknown key id")
        verify_signature(unverified, key)
        claims = unverified.claims
        if not audience_includes(claims, issuer.audience):
            raise InvalidToken("token not meant for this service")
        check_times(claims, now, self._skew)
        client_id = _client_id(claims)
        if issuer.clients is not None and issuer.clients.get(client_id) is None:
            raise InvalidToken("client is no longer registered")
        patient = claims.get("patient")
        jti = claims.get("jti")
        return AccessContext(
            issuer=iss,
            client_id=client_id,
            scopes=ScopeSet.from_claims(claims),
            patient=patient if isinstance(patient, str) and patient else None,
            token_id=jti if isinstance(jti, str) else None,
            expires_at=int(claims["exp"]),
        )


def bearer_token(authorization: str | None) -> str:
    """The token of a ``Bearer`` Authorization value (scheme case-insensitive)."""
    if authorization is None or not authorization.strip():
        raise InvalidToken("no bearer token")
    if len(authorization) > MAX_AUTHORIZATION_LENGTH:
        raise InvalidToken("authorization header too large")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidToken("not a bearer token")
    token = token.strip()
    if not token:
        raise InvalidToken("no bearer token")
    return token


def _client_id(claims: Mapping[str, Any]) -> str:
    for name in ("client_id", "azp", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    raise InvalidToken("token names no client")


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "value"
        problems.append(f"{where}: {item['msg']}")
    return "trusted issuers: " + "; ".join(problems)
