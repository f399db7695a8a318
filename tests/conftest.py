"""Shared fixtures: the service on SQLite and PostgreSQL, a FHIR test client whose every
response is checked by an independent R4 validator, and database helpers.

The service runs with CAREPLAN_AUTH=required, as in production: ``client`` sends a real
``system/*.cruds`` token from the app's built-in authorization server (``client.tokens`` gets
others; drop ``client.headers["authorization"]`` to call without one).

PostgreSQL tests need CAREPLAN_TEST_POSTGRES_URL. Without it they skip with that reason on a
developer machine; in CI (CI=true) a missing or unreachable PostgreSQL fails the run instead.
"""

import io
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.main import create_app
from service.observability import configure_logging
from service.settings import Settings
from service.store import migrations
from service.store.db import create_db_engine
from service.store.tables import metadata
from tests.support.r4_validator import R4Validator, node_available, validator_or_skip
from tests.support.tokens import Tokens

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("CAREPLAN_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_problem() -> str | None:
    if not POSTGRES_URL:
        return "CAREPLAN_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at CAREPLAN_TEST_POSTGRES_URL is unreachable: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A private schema in the test database, migrated once, dropped at the end."""
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    engine = create_db_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    yield url
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


def truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated, empty database on each backend."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "careplan.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_schema_url")
    truncate_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, db_connect_retries=0, auth="required")


@pytest.fixture(scope="session")
def r4_validator() -> Iterator[R4Validator | None]:
    """The independent validator, or None on a machine without Node (never in CI)."""
    reason = node_available()
    if reason and not IN_CI:
        yield None
        return
    validator = validator_or_skip(pytest)
    yield validator
    validator.close()


class FhirClient(TestClient):
    """A TestClient that checks every FHIR resource the server sends with the R4 validator."""

    validator: R4Validator | None = None
    checked = 0
    tokens: Tokens

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        content_type = response.headers.get("content-type", "")
        if self.validator is not None and "json" in content_type and response.content:
            body = response.json()
            if isinstance(body, dict) and "resourceType" in body:
                problems = self.validator.validate(body)
                assert not problems, f"server emitted invalid R4: {problems[:5]}"
                FhirClient.checked += 1
        return response


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings)


def tokens_for(test_client: TestClient) -> Tokens:
    """Tokens of the started app behind ``test_client``, requested through it."""

    def post(url: str, form: Any) -> tuple[int, Any]:
        response = test_client.post(
            url, data=form, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        return response.status_code, response.json()

    state = test_client.app.state  # type: ignore[attr-defined]
    base = state.settings.base_url.rstrip("/") or "http://testserver/fhir"
    return Tokens(state.authorization, post, base)


def authorize(test_client: TestClient, scope: str = "system/*.cruds") -> Tokens:
    """Send ``scope``'s token with every request of ``test_client`` (a started app)."""
    tokens = tokens_for(test_client)
    test_client.headers["authorization"] = f"Bearer {tokens.token(scope)}"
    return tokens


@pytest.fixture
def client(app: Any, r4_validator: R4Validator | None) -> Iterator[FhirClient]:
    with FhirClient(app) as test_client:
        test_client.validator = r4_validator
        test_client.tokens = authorize(test_client)
        test_client.headers["content-type"] = "application/fhir+json"
        yield test_client


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The service's JSON log into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_independent_validator_runs_in_ci() -> None:
    """Guard: CI must validate with Node; a developer machine without Node says why."""
    reason = node_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the independent R4 validator: {reason}")
        pytest.skip(reason)
