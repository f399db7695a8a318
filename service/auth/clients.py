"""Clients registered with the built-in authorization server: who they are, how their
assertions are verified (a JWKS, inline or at a URL) and which scopes they may be granted."""

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.auth.jwks import check_jwks_url, has_private_members, verification_keys
from service.auth.scopes import ScopeSet

_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


class ClientRegistrationError(ValueError):
    """A registration that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class Client:
    client_id: str
    allowed_scopes: str
    created: datetime
    jwks: Mapping[str, Any] | None = None
    jwks_url: str | None = None


class ClientStore(Protocol):
    def get(self, client_id: str) -> Client | None: ...

    def add(self, client: Client) -> None:
        """Raises ClientRegistrationError when the client id is taken."""
        ...

    def list_clients(self) -> Sequence[Client]: ...

    def remove(self, client_id: str) -> bool:
        """True when there was such a client."""
        ...


class InMemoryClientStore:
    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def add(self, client: Client) -> None:
        with self._lock:
            if client.client_id in self._clients:
                raise ClientRegistrationError(f"client {client.client_id!r} is already registered")
            self._clients[client.client_id] = client

    def list_clients(self) -> Sequence[Client]:
        return sorted(self._clients.values(), key=lambda client: client.client_id)

    def remove(self, client_id: str) -> bool:
        with self._lock:
            return self._clients.pop(client_id, None) is not None


def new_client(
    client_id: str,
    allowed_scopes: str,
    created: datetime,
    *,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str | None = None,
) -> Client:
    """A checked registration: a plain client id, exactly one of ``jwks`` (public keys only,
    at least one usable signing key with a kid) and ``jwks_url`` (https), and scopes that are
    all well-formed resource scopes. Raises ClientRegistrationError."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientRegistrationError(
            "client id: 1 to 128 characters of letters, digits and . _ ~ -"
        )
    if (jwks is None) == (jwks_url is None):
        raise ClientRegistrationError("give exactly one of a JWKS and a JWKS URL")
    if jwks is not None:
        if has_private_members(jwks):
            raise ClientRegistrationError(
                "the JWKS holds private key material: register public keys"
            )
        if not verification_keys(jwks):
            raise ClientRegistrationError(
                "the JWKS has no usable signing key (RSA of 2048+ bits or EC, with a kid)"
            )
    if jwks_url is not None:
        try:
            check_jwks_url(jwks_url)
        except ValueError as error:
            raise ClientRegistrationError(str(error)) from None
    scopes = ScopeSet.parse(allowed_scopes)
    if scopes.ignored:
        raise ClientRegistrationError(f"not resource scopes: {' '.join(scopes.ignored)}")
    if not scopes.scopes:
        raise ClientRegistrationError("no scopes given")
    return Client(client_id, str(scopes), created, jwks=jwks, jwks_url=jwks_url)
