"""A pooled PostgreSQL connection whose server process is gone (a database restart, an idle
timeout, a failover) costs the request nothing: the store finds out at the unit's first
statement, before anything was committed, and runs the unit again on a new connection."""

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.api.errors import as_fhir_error
from service.main import create_app
from service.settings import Settings
from service.store.db import create_db_engine
from service.store.errors import Unavailable
from service.store.repository import Tx
from service.store.runner import Store


@pytest.fixture
def pg_store(postgres_schema_url: str) -> Iterator[Store]:
    engine = create_db_engine(postgres_schema_url)
    yield Store(engine)
    engine.dispose()


def _backend_pid(tx: Tx) -> int:
    return int(tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = sa.create_engine(url)
    with admin.connect() as connection:
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    admin.dispose()


def _patient(rid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid}


def test_a_unit_on_a_dead_pooled_connection_runs_again_on_a_new_one(
    pg_store: Store, postgres_schema_url: str
) -> None:
    first = pg_store.run(_backend_pid)  # the pool keeps this connection
    _terminate(postgres_schema_url, first)

    def unit(tx: Tx) -> int:
        tx.create(_patient("after-restart"), "after-restart")
        return _backend_pid(tx)

    second = pg_store.run(unit)
    assert second != first
    stored = pg_store.run(lambda tx: tx.get("Patient", "after-restart"), read_only=True)
    assert stored is not None and stored.version == 1  # stored once


def test_a_lost_connection_on_every_attempt_is_a_503(
    pg_store: Store, postgres_schema_url: str
) -> None:
    def unit(tx: Tx) -> None:
        _terminate(postgres_schema_url, _backend_pid(tx))
        tx.create(_patient("never"), "never")

    with pytest.raises(Unavailable) as caught:
        pg_store.run(unit)
    assert as_fhir_error(caught.value).status == 503
    assert pg_store.run(lambda tx: tx.get("Patient", "never"), read_only=True) is None


def test_readiness_after_a_lost_pooled_connection(postgres_schema_url: str) -> None:
    """/readyz reports the database, not the pool: a connection that died while idle is
    replaced, and a server that is back answers ready at the first probe."""
    settings = Settings(database_url=postgres_schema_url, load_protocol=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        store: Store = client.app.state.store  # type: ignore[attr-defined]
        pooled = store.run(_backend_pid)
        _terminate(postgres_schema_url, pooled)
        assert client.get("/readyz").status_code == 200


def test_a_connection_lost_with_the_commit_is_a_503_not_a_second_run(
    pg_store: Store, postgres_schema_url: str
) -> None:
    """The last writes travel with COMMIT: lost on the way, the outcome is unknown, so the
    unit is not run again (it might have been stored) and the client is told so."""
    runs = []

    def unit(tx: Tx) -> None:
        runs.append(1)
        pid = _backend_pid(tx)
        tx.create(_patient("maybe"), "maybe")  # its history and index rows wait for COMMIT
        _terminate(postgres_schema_url, pid)

    with pytest.raises(Unavailable) as caught:
        pg_store.run(unit)
    assert as_fhir_error(caught.value).status == 503
    assert len(runs) == 1


def test_a_failed_unit_leaves_nothing_and_no_open_transaction(pg_store: Store) -> None:
    def unit(tx: Tx) -> None:
        tx.create(_patient("undone"), "undone")
        tx.get("Patient", "undone")  # sends the create's deferred writes
        raise ValueError("the unit fails after writing")

    with pytest.raises(ValueError, match="after writing"):
        pg_store.run(unit)
    assert pg_store.run(lambda tx: tx.get("Patient", "undone"), read_only=True) is None
    with pg_store.engine.connect() as connection:  # the pool's only connection
        status = connection.connection.dbapi_connection.info.transaction_status  # type: ignore[union-attr]
        assert status == psycopg.pq.TransactionStatus.IDLE
        count = "SELECT count(*) FROM resource_history WHERE res_id = 'undone'"
        assert connection.execute(sa.text(count)).scalar() == 0
