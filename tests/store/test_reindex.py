"""Reindexing: stored search index rows brought in line with this release's indexer.

The rows of a resource are computed when it is written, so a release that changes a search
parameter must rebuild the rows of what is already stored (service/store/reindex.py).
"""

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from service import cli
from service.fhir import search_params
from service.fhir.indexing import INDEXER_VERSION, index_rows
from service.fhir.search_params import SEARCH_PARAMS, SearchParam
from service.main import check_schema
from service.settings import get_settings
from service.store import reindex
from service.store.db import create_db_engine
from service.store.runner import Store
from service.store.tables import INDEX_TABLES, index_state
from tests.protocol import builders as b
from tests.support.r4_examples import load_examples

# The digest of index_rows over the official examples (see the last test). When it changes,
# stored rows are stale: bump INDEXER_VERSION in service/fhir/indexing.py and record the new
# digest here, so `careplan migrate` rebuilds them. (2: SearchParameter became a stored type;
# 3: AuditEvent and the :identifier modifier of references; 4: Subscription too.)
PINNED_ROWS = {
    1: "77d5b9ca46500932",
    2: "69dd08dc7862f44f",
    3: "4b071f79362b1a80",
    4: "79d121bd3b2e0bb9",
}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def _ids(store: Store, resource_type: str, items: list[tuple[str, str]]) -> list[str]:
    return store.run(lambda tx: sorted(r["id"] for r in tx.find(resource_type, items)))


def _seed(store: Store) -> None:
    panel, reps = b.session_resources([3, 2, 1], b.at(0, 10))
    resources = [
        {**b.patient(), "id": "p1"},
        {**b.patient(), "id": "p2", "gender": "female"},
        b.daily_pain(b.at(0), 2),
        panel,
        *reps,
    ]
    store.run(lambda tx: tx.create_many([(r, r["id"]) for r in resources]))


def _execute(engine: sa.Engine, statement: Any) -> None:
    with engine.begin() as connection:
        connection.execute(statement)


def test_rows_written_by_this_release_are_left_alone(engine: sa.Engine) -> None:
    _seed(Store(engine))
    report = reindex.reindex(engine, batch_size=2)  # several batches
    assert report.scanned == 7
    assert report.rewritten == 0
    assert reindex.is_current(engine)


def test_missing_and_wrong_rows_are_rewritten_and_only_theirs(engine: sa.Engine) -> None:
    store = Store(engine)
    _seed(store)
    tokens, dates = INDEX_TABLES["token"], INDEX_TABLES["date"]
    # One resource lost its date rows, another has a wrong code: stale rows of two resources.
    with engine.begin() as connection:
        seqs = dict(connection.execute(sa.text("SELECT res_id, seq FROM resource")).all())
    pain_id = b.daily_pain(b.at(0), 2)["id"]
    _execute(engine, dates.delete().where(dates.c.resource_seq == seqs[pain_id]))
    _execute(
        engine,
        tokens.update()
        .where(tokens.c.resource_seq == seqs["p2"], tokens.c.param == "gender")
        .values(code="unknown-to-fhir"),
    )
    window = [("patient", "Patient/p1"), ("non-session-date", "ge2025-03-01")]
    assert _ids(store, "Observation", window) == []

    report = reindex.reindex(engine, batch_size=3)

    assert (report.scanned, report.rewritten) == (7, 2)
    assert _ids(store, "Observation", window) == [pain_id]
    assert _ids(store, "Patient", [("gender", "unknown-to-fhir")]) == []
    assert reindex.reindex(engine).rewritten == 0


def test_session_observations_have_no_non_session_date() -> None:
    panel, reps = b.session_resources([3, 2, 1], b.at(0, 10))
    pain = b.daily_pain(b.at(0), 2)
    assert [r["param"] for r in index_rows(pain)["date"]] == ["date", "non-session-date"]
    for observation in (panel, *reps):
        assert [r["param"] for r in index_rows(observation)["date"]] == ["date"]


def test_a_new_search_parameter_is_indexed_by_migrate(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(engine)
    _seed(store)
    check_schema(engine, migrate=True)  # records this release's fingerprint
    assert check_schema(engine, migrate=True) is None  # nothing to do

    family = SearchParam("family-again", "string", ("name.family",), "A new parameter")
    monkeypatch.setitem(SEARCH_PARAMS, "Patient", [*SEARCH_PARAMS["Patient"], family])
    monkeypatch.setattr(search_params, "SEARCH_PARAMS", SEARCH_PARAMS)
    assert not reindex.is_current(engine)

    report = check_schema(engine, migrate=True)

    assert report is not None and report.rewritten == 2  # the two Patients (named)
    assert reindex.is_current(engine)


def test_start_without_migrate_reports_a_stale_index(
    engine: sa.Engine, log_stream: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _execute(engine, index_state.delete())
    with caplog.at_level(logging.WARNING, logger="careplan"):
        assert check_schema(engine, migrate=False) is None
    assert "run `careplan migrate` to reindex" in caplog.text
    assert not reindex.is_current(engine)  # reported, not done: another release may be newer


def test_cli_reindex(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("CAREPLAN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    engine = create_db_engine(database_url)
    _seed(Store(engine))
    dates = INDEX_TABLES["date"]
    _execute(engine, dates.delete())
    engine.dispose()
    assert cli.main(["reindex", "--batch-size", "4"]) == 0
    get_settings.cache_clear()
    assert "7 resources read, 5 rewritten" in capsys.readouterr().out  # the Observations


def test_indexer_version_pins_the_rows_of_the_official_examples() -> None:
    """Fails when the rows a resource gets change: bump INDEXER_VERSION (see PINNED_ROWS)."""
    digest = hashlib.sha256()
    for resource_type in sorted(SEARCH_PARAMS):
        for example in load_examples(resource_type):
            rows = index_rows(example)
            digest.update(orjson.dumps(rows, default=str, option=orjson.OPT_SORT_KEYS))
    assert PINNED_ROWS.get(INDEXER_VERSION) == digest.hexdigest()[:16]
