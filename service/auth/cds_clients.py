"""The CDS Hooks caller check: every call from an EHR (discovery included) carries a JWT the
EHR signed (CDS Hooks 2.0, "Trusting CDS Clients"), a separate trust list from the FHIR
API's token issuers.

Order, cheapest refusal first: header size and scheme, token size and shape, algorithm
(RS256, RS384, ES256, ES384; ``none`` and HMAC refused before any key lookup), ``typ`` absent
or ``JWT`` (an access token is not a CDS call), ``iss`` among the configured clients, a
``kid``, ``jku`` absent or equal to that client's configured JWKS URL (keys are only ever
fetched from the configured URL, never from one the token names), the key, the signature,
``aud`` the exact URL called, ``exp`` required, not past and at most five minutes ahead,
``nbf``/``iat`` not in the future (60 s skew), a ``jti``; last, the ``jti`` must be new for
this issuer (a token refused for another reason does not use up its ``jti``).

Clients are configured as JSON (``parse_cds_clients``): ``{issuer, jwks_uri | jwks}``.
Reasons are short fixed texts; the token never appears in a message or a log.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from service.auth.jti_store import JtiStore
from service.auth.jwks import (
    DEFAULT_REFETCH_INTERVAL_SECONDS,
    JwksFetcher,
    JwksUnavailable,
    KeySource,
    RemoteJwks,
    StaticKeys,
    http_jwks_fetcher,
)
from service.auth.signed_jwt import (
    CLOCK_SKEW_SECONDS,
    MAX_KID_LENGTH,
    JwtRejected,
    audience_includes,
    check_times,
    parse_unverified,
    verify_signature,
)
from service.auth.verify import Clock, InvalidToken, IssuerKeys, KeysUnavailable, bearer_token

# CDS Hooks 2.0: the JWT's exp is at most five minutes ahead.
MAX_LIFETIME_SECONDS = 300


class CdsClientConfigError(ValueError):
    """``CAREPLAN_CDS_CLIENTS`` cannot be used; the message says where and why."""


class CdsClient(IssuerKeys):
    """One EHR allowed to call: its issuer and exactly one of ``jwks_uri`` and ``jwks``."""


_CLIENT_LIST = TypeAdapter(list[CdsClient])


def parse_cds_clients(text: str) -> list[CdsClient]:
    """The clients of a JSON list of ``{issuer, jwks_uri | jwks}`` (empty text: none).
    Raises CdsClientConfigError."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CdsClientConfigError(f"CDS clients: not JSON ({error})") from None
    if not isinstance(data, list):
        raise CdsClientConfigError("CDS clients: expected a JSON list of client objects")
    try:
        clients = _CLIENT_LIST.validate_python(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or 'value'}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        raise CdsClientConfigError("CDS clients: " + "; ".join(problems)) from None
    issuers = [client.issuer for client in clients]
    for issuer in issuers:
        if issuers.count(issuer) > 1:
            raise CdsClientConfigError(f"CDS clients: {issuer!r} is listed twice")
    return clients


@dataclass(frozen=True)
class CdsCaller:
    """The EHR whose JWT was accepted."""

    issuer: str
    jti: str
    expires_at: float
    tenant: str | None = None


@dataclass(frozen=True)
class _Client:
    keys: KeySource
    jwks_uri: str | None


class CdsJwtVerifier:
    def __init__(
        self,
        clients: Sequence[CdsClient],
        jti_store: JtiStore,
        *,
        fetch: JwksFetcher | None = None,
        clock: Clock = time.time,
        skew: float = CLOCK_SKEW_SECONDS,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        fetcher = fetch or http_jwks_fetcher()
        self._clients: dict[str, _Client] = {}
        for client in clients:
            keys: KeySource
            if client.jwks is not None:
                keys = StaticKeys(client.jwks)
            else:
                assert client.jwks_uri is not None  # the model requires one of them
                keys = RemoteJwks(client.jwks_uri, fetcher, refetch_interval)
            self._clients[client.issuer] = _Client(keys, client.jwks_uri)
        self._jti_store = jti_store
        self._clock = clock
        self._skew = skew

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def verify(self, authorization: str | None, audience: str) -> CdsCaller:
        """Checks the ``Authorization`` header of a call to ``audience`` (the exact URL
        called). Raises InvalidToken (KeysUnavailable when the client's keys could not be
        fetched). May block: a JWKS fetch, the ``jti`` store."""
        try:
            return self._verify(bearer_token(authorization), audience)
        except JwtRejected as rejected:
            raise InvalidToken(rejected.reason) from None

    def _verify(self, token: str, audience: str) -> CdsCaller:
        unverified = parse_unverified(token)
        typ = unverified.header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise InvalidToken("token type must be JWT")
        iss = unverified.claims.get("iss")
        if not isinstance(iss, str) or iss not in self._clients:
            raise InvalidToken("issuer is not a configured CDS client")
        client = self._clients[iss]
        kid = unverified.kid
        if kid is None:
            raise InvalidToken("token has no key id")
        jku = unverified.header.get("jku")
        if jku is not None and (client.jwks_uri is None or jku != client.jwks_uri):
            raise InvalidToken("jku is not the client's configured JWKS URL")
        now = self._clock()
        try:
            key = client.keys.key_for(kid, unverified.algorithm, now)
        except JwksUnavailable:
            raise KeysUnavailable("the client's keys could not be fetched") from None
        if key is None:
            raise InvalidToken("unknown key id")
        verify_signature(unverified, key)
        claims = unverified.claims
        if not audience_includes(claims, audience):
            raise InvalidToken("aud is not the URL called")
        check_times(claims, now, self._skew)
        exp = float(claims["exp"])
        if exp > now + MAX_LIFETIME_SECONDS + self._skew:
            raise InvalidToken("exp more than 5 minutes ahead")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_KID_LENGTH:
            raise InvalidToken("token has no usable jti")
        if not self._jti_store.add_if_absent(iss, jti, exp + self._skew, now):
            raise InvalidToken("token already used (jti)")
        tenant = claims.get("tenant")
        return CdsCaller(iss, jti, exp, tenant if isinstance(tenant, str) else None)
