"""Who may call: the resource server's token check, the built-in authorization server (token
endpoint, JWKS, discovery) and the mode (CAREPLAN_AUTH) that says whether tokens are needed.

The built-in server lives under the FHIR base URL: issuer ``<base>/auth``, token endpoint
``<base>/auth/token``, keys at ``<base>/auth/jwks``; its tokens' audience is the base URL
itself. When CAREPLAN_BASE_URL is empty the base comes from each request, so a verifier and a
token server are kept per base (a few at most).
"""

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
from sqlalchemy.engine import Engine

from service.auth.jwks import JwksFetcher, http_jwks_fetcher
from service.auth.keys import ServiceKeys
from service.auth.signed_jwt import CLOCK_SKEW_SECONDS
from service.auth.smart_config import smart_configuration
from service.auth.token_server import TokenServer
from service.auth.verify import (
    AccessContext,
    BuiltinIssuer,
    IssuerConfigError,
    TokenVerifier,
    TrustedIssuer,
    parse_trusted_issuers,
)
from service.usecases.credentials import (
    CLIENT_CACHE_SECONDS,
    DatabaseClientStore,
    DatabaseJtiStore,
    DatabaseKeyStore,
    check_encryption_key,
    non_blocking,
    run_blocking_if_needed,
)

Mode = Literal["auto", "required", "off"]
MAX_BASES = 8
MAX_VERIFIED_TOKENS = 4096


class AuthConfigError(ValueError):
    """The authorization settings cannot be used; one line saying why."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthPolicy:
    """Whether a request needs a token. ``auto`` runs open only when the service is bound to
    a loopback address and the request came in on one (the socket's own address, so a process
    started on 0.0.0.0 without saying so still asks remote callers for tokens)."""

    mode: Mode
    host: str

    @property
    def open_at_start(self) -> bool:
        return self.mode == "off" or (self.mode == "auto" and is_loopback(self.host))

    def is_open(self, local_address: str | None) -> bool:
        if self.mode == "off":
            return True
        if self.mode == "required":
            return False
        return is_loopback(self.host) and is_loopback(local_address)


def check_policy(mode: Mode, host: str) -> AuthPolicy:
    """The policy, or AuthConfigError for ``off`` on an address other than loopback."""
    if mode == "off" and not is_loopback(host):
        raise AuthConfigError(
            f"CAREPLAN_AUTH=off is refused: the service is bound to {host}, not to a loopback "
            "address; use CAREPLAN_AUTH=required (or auto)"
        )
    return AuthPolicy(mode, host)


def trusted_issuers(text: str, base_url: str) -> list[TrustedIssuer]:
    """CAREPLAN_AUTH_ISSUERS, each with its audience (CAREPLAN_BASE_URL when not given).
    Raises AuthConfigError."""
    try:
        issuers = parse_trusted_issuers(text, base_url.rstrip("/"))
    except IssuerConfigError as error:
        raise AuthConfigError(f"CAREPLAN_AUTH_ISSUERS: {error}") from None
    for issuer in issuers:
        if not issuer.audience:
            raise AuthConfigError(
                f"CAREPLAN_AUTH_ISSUERS: issuer {issuer.issuer!r} has no audience and "
                "CAREPLAN_BASE_URL is empty: give one of them"
            )
        if base_url and issuer.issuer == issuer_url(base_url.rstrip("/")):
            raise AuthConfigError(
                f"CAREPLAN_AUTH_ISSUERS: {issuer.issuer!r} is the built-in issuer: do not list it"
            )
    return issuers


def check_key_encryption_key(value: str) -> None:
    try:
        check_encryption_key(value)
    except ValueError as error:
        raise AuthConfigError(str(error)) from None


def issuer_url(base: str) -> str:
    return f"{base}/auth"


def token_url(base: str) -> str:
    return f"{base}/auth/token"


def jwks_url(base: str) -> str:
    return f"{base}/auth/jwks"


class Authorization:
    """The token check and the built-in server over the database's clients and keys."""

    def __init__(
        self,
        engine: Engine,
        policy: AuthPolicy,
        *,
        issuers: list[TrustedIssuer],
        token_lifetime: int,
        key_encryption_key: str = "",
        fetch: JwksFetcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.clients = DatabaseClientStore(engine)
        self.key_store = DatabaseKeyStore(engine, key_encryption_key)
        # A superseded key verifies until every token it signed has expired.
        self.keys = ServiceKeys(self.key_store, retire_after=token_lifetime + CLOCK_SKEW_SECONDS)
        self.jti_store = DatabaseJtiStore(engine)
        self.token_lifetime = token_lifetime
        self._issuers = issuers
        self._fetch = non_blocking(fetch or http_jwks_fetcher())
        self._clock = clock
        self._per_base: OrderedDict[str, tuple[TokenVerifier, TokenServer]] = OrderedDict()
        # (base URL, Authorization value) -> (the caller, until when it is taken as verified)
        self._verified: dict[tuple[str, str], tuple[AccessContext, float]] = {}
        self.clients.removed.append(self._forget_client)

    def _for_base(self, base: str) -> tuple[TokenVerifier, TokenServer]:
        found = self._per_base.get(base)
        if found is not None:
            return found
        builtin = BuiltinIssuer(issuer_url(base), base, self.keys, self.clients)
        # A request's Host may make the built-in issuer's URL equal a configured one's: the
        # built-in issuer is the one meant at that address.
        external = [issuer for issuer in self._issuers if issuer.issuer != builtin.issuer]
        verifier = TokenVerifier(external, builtin=builtin, fetch=self._fetch, clock=self._clock)
        server = TokenServer(
            issuer=issuer_url(base),
            audience=base,
            clients=self.clients,
            jti_store=self.jti_store,
            keys=self.keys,
            fetch=self._fetch,
            token_lifetime=self.token_lifetime,
        )
        self._per_base[base] = (verifier, server)
        while len(self._per_base) > MAX_BASES:
            self._per_base.popitem(last=False)
        return verifier, server

    async def authenticate(self, authorization: str | None, base: str) -> AccessContext:
        """The caller of a request, from its Authorization header; raises InvalidToken."""
        now = self._clock()
        key = (base, authorization or "")
        cached = self._verified.get(key)
        if cached is not None and now < cached[1]:
            return cached[0]
        verifier, _ = self._for_base(base)
        caller = await run_blocking_if_needed(lambda: verifier.verify_authorization(authorization))
        self._remember(key, caller, now)
        return caller

    def _remember(self, key: tuple[str, str], caller: AccessContext, now: float) -> None:
        """A client sends the same token with every request for minutes: checking its
        signature once (RS256, ~0.1 ms, plus parsing its scopes) rather than every time
        is most of what a read costs extra with tokens. A verified token is taken as it
        is until it expires (with the same skew as the check) or for the few seconds a
        client lookup is cached anyway, whichever comes first; a client removed through
        this process is forgotten at once."""
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()
        until = min(caller.expires_at + CLOCK_SKEW_SECONDS, now + CLIENT_CACHE_SECONDS)
        self._verified[key] = (caller, until)

    def _forget_client(self, client_id: str) -> None:
        self._verified = {
            key: entry for key, entry in self._verified.items() if entry[0].client_id != client_id
        }

    async def issue_token(self, form: Mapping[str, str], base: str) -> dict[str, Any]:
        """The token endpoint's answer; raises OAuthError (RFC 6749)."""
        _, server = self._for_base(base)
        url = token_url(base)
        return await anyio.to_thread.run_sync(lambda: server.issue_token(form, url, self._clock()))

    async def public_jwks(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(lambda: self.keys.public_jwks(self._clock()))

    def smart_configuration(self, base: str) -> dict[str, Any]:
        return smart_configuration(token_url(base), jwks_url(base), issuer_url(base))
