"""The database behind the built-in authorization server, on SQLite and PostgreSQL: a client
assertion id is accepted once (also by concurrent callers), client lookups are cached briefly,
reads never block the event loop, and signing keys can be encrypted at rest."""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

from service.auth.clients import Client, ClientRegistrationError
from service.auth.keys import generate_key
from service.store import credentials as rows
from service.store.db import create_db_engine
from service.usecases.credentials import (
    DatabaseClientStore,
    DatabaseJtiStore,
    DatabaseKeyStore,
    KeyDecryptionError,
    MustBlock,
    run_blocking_if_needed,
)

NOW = 1_900_000_000.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def _client(client_id: str = "ehr") -> Client:
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "x", "y": "y"}]}
    return Client(client_id, "system/*.rs", datetime.now(UTC), jwks=jwks)


def test_a_jti_is_accepted_once_until_it_expires(engine: Engine) -> None:
    store = DatabaseJtiStore(engine)
    assert store.add_if_absent("ehr", "j1", NOW + 300, NOW)
    assert not store.add_if_absent("ehr", "j1", NOW + 300, NOW + 10)
    assert store.add_if_absent("lab", "j1", NOW + 300, NOW + 10)  # another client's id
    assert store.add_if_absent("ehr", "j1", NOW + 700, NOW + 400)  # the first has expired


def test_concurrent_uses_of_one_jti_let_exactly_one_through(engine: Engine) -> None:
    results: list[bool] = []
    start = threading.Barrier(6)

    def use() -> None:
        start.wait()
        results.append(DatabaseJtiStore(engine).add_if_absent("ehr", "race", NOW + 300, NOW))

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]


def test_expired_jtis_are_purged(engine: Engine) -> None:
    store = DatabaseJtiStore(engine)
    store.add_if_absent("ehr", "old", NOW + 10, NOW)
    store.add_if_absent("ehr", "new", NOW + 10_000, NOW + 100)  # purges the expired "old"
    assert rows.purge_jti(engine, NOW + 200) == 0


def test_client_lookups_are_cached_for_a_few_seconds(engine: Engine) -> None:
    clock = [0.0]
    reader = DatabaseClientStore(engine, ttl=5.0, clock=lambda: clock[0])
    other_process = DatabaseClientStore(engine)
    other_process.add(_client())
    assert reader.get("ehr") is not None
    assert other_process.remove("ehr")
    clock[0] = 4.0
    assert reader.get("ehr") is not None  # still cached
    clock[0] = 5.5
    assert reader.get("ehr") is None


def test_a_client_removed_through_the_same_store_is_gone_at_once(engine: Engine) -> None:
    store = DatabaseClientStore(engine)
    store.add(_client())
    assert store.get("ehr") is not None
    store.remove("ehr")
    assert store.get("ehr") is None
    with pytest.raises(ClientRegistrationError):
        store.add(_client("twice"))
        store.add(_client("twice"))


def test_reads_on_the_event_loop_move_to_a_thread(engine: Engine) -> None:
    store = DatabaseClientStore(engine)
    store.add(_client())
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def lookup() -> Client | None:
        threads.append(threading.get_ident())
        return store.get("ehr")

    async def main() -> Client | None:
        with pytest.raises(MustBlock):
            store.get("ehr")  # not cached yet: it would have to read
        return await run_blocking_if_needed(lookup)

    assert asyncio.run(main()) is not None
    assert threads[0] == loop_thread and threads[1] != loop_thread

    async def cached() -> Client | None:
        return await run_blocking_if_needed(lookup)

    assert asyncio.run(cached()) is not None
    assert threads[2] == loop_thread  # cached: answered on the loop


def test_signing_keys_encrypted_at_rest(engine: Engine) -> None:
    secret = Fernet.generate_key().decode()
    store = DatabaseKeyStore(engine, secret)
    key = generate_key(NOW)
    store.save(key)
    (row,) = rows.list_keys(engine)
    assert row.private_jwk.startswith("fernet:") and key.private_jwk not in row.private_jwk
    assert [k.private_jwk for k in store.list_keys()] == [key.private_jwk]
    with pytest.raises(KeyDecryptionError, match="encrypted"):
        DatabaseKeyStore(engine).check_readable()
    with pytest.raises(KeyDecryptionError, match="does not decrypt"):
        DatabaseKeyStore(engine, Fernet.generate_key().decode()).check_readable()
