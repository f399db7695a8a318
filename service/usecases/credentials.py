"""The database behind the built-in authorization server: service/auth's ClientStore, KeyStore
and JtiStore over service/store/credentials.py.

Token checks run on the event loop, where a database read or an HTTP fetch would stall every
other request. So the stores the verifier reads keep what they read for a short while, and when
they would have to read again on the event loop they raise ``MustBlock`` instead: the caller
runs the same check again in a worker thread (``run_blocking_if_needed``), where they read. A
client removed by another process is refused once its cache entry is older than
``CLIENT_CACHE_SECONDS``; one removed through this process at once.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.to_thread
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import Engine

from service.auth.clients import Client, ClientRegistrationError
from service.auth.jwks import FetchDeferred, JwksFetcher
from service.auth.keys import StoredKey
from service.store import credentials as rows

T = TypeVar("T")
CLIENT_CACHE_SECONDS = 5.0
MAX_CACHED_CLIENTS = 1024
JTI_PURGE_INTERVAL_SECONDS = 60.0
_ENCRYPTED = "fernet:"


class MustBlock(FetchDeferred):
    """Reading now would block the event loop: run the check again in a worker thread."""


class KeyDecryptionError(RuntimeError):
    """Stored signing keys cannot be read with the configured encryption key (or without one)."""


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def run_blocking_if_needed(check: Callable[[], T]) -> T:
    """``check()`` on the event loop, or in a worker thread when it needs to block."""
    try:
        return check()
    except MustBlock:
        return await anyio.to_thread.run_sync(check)


def non_blocking(fetch: JwksFetcher) -> JwksFetcher:
    """A JWKS fetcher that defers (``MustBlock``) when called on the event loop."""

    def deferring(url: str) -> object:
        if on_event_loop():
            raise MustBlock()
        return fetch(url)

    return deferring  # type: ignore[return-value]


class DatabaseClientStore:
    """Registered clients in the database, each lookup kept ``ttl`` seconds."""

    def __init__(
        self,
        engine: Engine,
        ttl: float = CLIENT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[Client | None, float]] = {}
        self._lock = threading.Lock()
        # Called with the client id after a removal (the verified-token cache forgets).
        self.removed: list[Callable[[str], None]] = []

    def get(self, client_id: str) -> Client | None:
        cached = self._cache.get(client_id)
        now = self._clock()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        if on_event_loop():
            raise MustBlock()
        row = rows.get_client(self._engine, client_id)
        client = None if row is None else _client(row)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_CLIENTS:
                self._cache.clear()
            self._cache[client_id] = (client, now)
        return client

    def add(self, client: Client) -> None:
        row = rows.ClientRow(
            client.client_id,
            client.allowed_scopes,
            client.created.replace(tzinfo=None),
            dict(client.jwks) if client.jwks is not None else None,
            client.jwks_url,
        )
        if not rows.add_client(self._engine, row):
            raise ClientRegistrationError(f"client {client.client_id!r} is already registered")
        self._forget(client.client_id)

    def list_clients(self) -> Sequence[Client]:
        return [_client(row) for row in rows.list_clients(self._engine)]

    def remove(self, client_id: str) -> bool:
        removed = rows.remove_client(self._engine, client_id)
        self._forget(client_id)
        for listener in self.removed:
            listener(client_id)
        return removed

    def _forget(self, client_id: str) -> None:
        with self._lock:
            self._cache.pop(client_id, None)


def _client(row: rows.ClientRow) -> Client:
    return Client(
        row.client_id, row.allowed_scopes, row.created, jwks=row.jwks, jwks_url=row.jwks_url
    )


class DatabaseKeyStore:
    """The service's signing keys in the database, encrypted with ``encryption_key`` (a Fernet
    key) when one is given. ServiceKeys keeps what it reads; a read on the event loop defers."""

    def __init__(self, engine: Engine, encryption_key: str = "") -> None:
        self._engine = engine
        self._fernet = Fernet(encryption_key.encode()) if encryption_key else None

    def list_keys(self) -> Sequence[StoredKey]:
        if on_event_loop():
            raise MustBlock()
        return [
            StoredKey(row.kid, self._decrypt(row.private_jwk), row.created_at, row.superseded_at)
            for row in rows.list_keys(self._engine)
        ]

    def save(self, key: StoredKey) -> None:
        text = key.private_jwk
        if self._fernet is not None:
            text = _ENCRYPTED + self._fernet.encrypt(text.encode()).decode()
        rows.save_key(self._engine, rows.KeyRow(key.kid, text, key.created_at, key.superseded_at))

    def delete(self, kid: str) -> None:
        rows.delete_key(self._engine, kid)

    def check_readable(self) -> None:
        """Raises KeyDecryptionError unless every stored key can be read (start-up)."""
        for row in rows.list_keys(self._engine):
            self._decrypt(row.private_jwk)

    def _decrypt(self, text: str) -> str:
        if not text.startswith(_ENCRYPTED):
            return text
        if self._fernet is None:
            raise KeyDecryptionError(
                "the signing keys in the database are encrypted: set "
                "CAREPLAN_AUTH_KEY_ENCRYPTION_KEY to the key they were stored with"
            )
        try:
            return self._fernet.decrypt(text[len(_ENCRYPTED) :].encode()).decode()
        except InvalidToken:
            raise KeyDecryptionError(
                "CAREPLAN_AUTH_KEY_ENCRYPTION_KEY does not decrypt the signing keys in the database"
            ) from None


class DatabaseJtiStore:
    """Used client-assertion ids; expired ones are purged at most once a minute."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._purged_at: float | None = None

    def add_if_absent(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        if self._purged_at is None or abs(now - self._purged_at) >= JTI_PURGE_INTERVAL_SECONDS:
            self._purged_at = now
            rows.purge_jti(self._engine, now)
        return rows.add_jti(self._engine, client_id, jti, expires_at, now)


def check_encryption_key(value: str) -> None:
    """Raises ValueError unless ``value`` is empty or a Fernet key."""
    if value:
        try:
            Fernet(value.encode())
        except ValueError:
            raise ValueError(
                "CAREPLAN_AUTH_KEY_ENCRYPTION_KEY must be urlsafe base64 of 32 bytes "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None
