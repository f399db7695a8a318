"""Searches by reference url still use the url index now that it is partial (alembic 0006)."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from service.store.db import create_db_engine
from service.store.runner import Store

CANONICAL = "https://example.org/PlanDefinition/p"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()


def _care_plan(rid: str, canonical: str) -> dict:
    return {
        "resourceType": "CarePlan",
        "id": rid,
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "instantiatesCanonical": [canonical],
    }


def _plan_text(store: Store) -> str:
    sql = (
        "SELECT resource_seq FROM idx_reference WHERE res_type = 'CarePlan' "
        f"AND param = 'instantiates-canonical' AND target_url = '{CANONICAL}'"
    )
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return " ".join(str(row[-1]) for row in rows)
        # A test table is tiny: without this PostgreSQL reads it whole, index or not.
        connection.exec_driver_sql("SET enable_seqscan = off")
        return " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}").all())


def test_a_search_by_url_finds_the_resource_through_the_partial_index(store: Store) -> None:
    store.run(
        lambda tx: tx.create_many(
            [(_care_plan("a", CANONICAL), "a"), (_care_plan("b", f"{CANONICAL}-other"), "b")]
        )
    )
    found = store.run(
        lambda tx: [b["id"] for b in tx.find("CarePlan", [("instantiates-canonical", CANONICAL)])]
    )
    assert found == ["a"]
    assert "ix_idx_reference_url" in _plan_text(store)


def test_rows_without_a_url_are_not_in_the_url_index(store: Store) -> None:
    store.run(lambda tx: tx.create_many([(_care_plan("a", CANONICAL), "a")]))
    with store.engine.connect() as connection:
        local, with_url = connection.execute(
            sa.text("SELECT count(*) - count(target_url), count(target_url) FROM idx_reference")
        ).one()
        definition = connection.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_idx_reference_url'"
                if store.engine.dialect.name == "sqlite"
                else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_idx_reference_url' "
                "AND schemaname = current_schema()"
            )
        ).scalar_one()
    assert local >= 2 and with_url == 1  # subject and patient are local, the canonical is not
    assert "target_url IS NOT NULL" in definition
