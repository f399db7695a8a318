"""Start-up failures end with one clear line and a non-zero exit, never a traceback.

The CLI cases run `careplan` as a real subprocess (that is what a container runs); the
lifespan cases call the app factory in-process, as a program embedding the app would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.main import StartupError, create_app, wait_for_database
from service.settings import Settings
from service.store import migrations
from tests.conftest import IN_CI, POSTGRES_URL, _postgres_problem
from tests.deploy.processes import cli_env, free_port, run_cli

EXIT_STARTUP = 2  # `careplan` start-up failure (uvicorn's own is 3)


def _error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one stderr line of a failed start; stdout holds only JSON log lines."""
    assert result.returncode == EXIT_STARTUP, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for line in result.stdout.splitlines():
        json.loads(line)
    assert lines[0].startswith(f"careplan {command}: ")
    return lines[0]


@pytest.mark.parametrize(
    ("command", "url", "expected"),
    [
        ("serve", "mysqlx://db/careplan", "invalid CAREPLAN_DATABASE_URL: Can't load plugin"),
        ("migrate", "mysqlx://db/careplan", "invalid CAREPLAN_DATABASE_URL: Can't load plugin"),
        ("serve", "not a url", "invalid CAREPLAN_DATABASE_URL: Could not parse"),
    ],
)
def test_bad_database_url(tmp_path: Path, command: str, url: str, expected: str) -> None:
    env = cli_env(database_url=url, port=free_port())
    assert expected in _error_line(run_cli([command], env, tmp_path), command)


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unreachable_database_retries_then_fails(tmp_path: Path, command: str) -> None:
    closed = free_port()
    url = f"postgresql+psycopg://careplan:s3cret-pw@127.0.0.1:{closed}/careplan"
    env = cli_env(
        database_url=url, db_connect_retries=2, db_connect_backoff_seconds=0.2, port=free_port()
    )
    started = time.monotonic()
    result = run_cli([command], env, tmp_path)
    line = _error_line(result, command)
    assert f"127.0.0.1:{closed}/careplan unreachable after 3 attempts" in line
    assert "Connection refused" in line
    assert "s3cret-pw" not in result.stdout + result.stderr, "the password must not be printed"
    retries = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["message"][:26] for r in retries] == ["database not reachable yet"] * 2
    assert all(r["level"] == "WARNING" for r in retries)
    assert time.monotonic() - started < 30  # bounded: 2 retries x 0.2 s plus start-up


def test_schema_behind_without_migrate_on_start(tmp_path: Path) -> None:
    env = cli_env(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        migrate_on_start=False,
        port=free_port(),
    )
    line = _error_line(run_cli(["serve"], env, tmp_path), "serve")
    assert "database schema is empty (no migrations applied)" in line
    assert f"needs {migrations.head_revision()}" in line
    assert "run `careplan migrate`" in line


def test_migrate_then_schema_is_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'careplan.db'}"
    result = run_cli(["migrate"], cli_env(database_url=url), tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"database at revision {migrations.head_revision()}" in result.stdout
    # The lifespan now accepts the schema without migrating.
    settings = Settings(database_url=url, migrate_on_start=False, load_protocol=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    env = cli_env(port="eighty")
    line = _error_line(run_cli(["serve"], env, tmp_path), "serve")
    assert "invalid configuration: CAREPLAN_PORT:" in line


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unknown_log_level_is_one_line(tmp_path: Path, command: str) -> None:
    env = cli_env(database_url=f"sqlite:///{tmp_path / 'x.db'}", log_level="LOUD")
    line = _error_line(run_cli([command], env, tmp_path), command)
    assert "invalid configuration: CAREPLAN_LOG_LEVEL:" in line
    assert "'LOUD' is not one of CRITICAL, ERROR, WARNING, INFO, DEBUG" in line


@pytest.mark.parametrize("size", ["0", "-5"])
def test_reindex_refuses_a_batch_size_below_one(tmp_path: Path, size: str) -> None:
    env = cli_env(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert run_cli(["migrate"], env, tmp_path).returncode == 0
    line = _error_line(run_cli(["reindex", "--batch-size", size], env, tmp_path), "reindex")
    assert line == "careplan reindex: --batch-size must be at least 1"


@pytest.fixture
def postgres_url() -> str:
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
        pytest.skip(problem)
    return POSTGRES_URL


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("part", "value", "expected"),
    [
        ("database", "careplan_no_such_database", 'database "careplan_no_such_database" does not'),
        ("username", "careplan_no_such_role", 'role "careplan_no_such_role" does not exist'),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_database_that_refuses_for_good_fails_at_once(
    tmp_path: Path, postgres_url: str, command: str, part: str, value: str, expected: str
) -> None:
    """Not retried like an outage: the server answered, and waiting will not change its answer."""
    url = make_url(postgres_url).set(**{part: value}).render_as_string(hide_password=False)
    env = cli_env(
        database_url=url, db_connect_retries=3, db_connect_backoff_seconds=0.1, port=free_port()
    )
    result = run_cli([command], env, tmp_path)
    line = _error_line(result, command)
    assert "refused the connection" in line and expected in line
    assert result.stdout == "", "no retry was logged"


@pytest.mark.parametrize(
    ("answer", "retried"),
    [
        ('FATAL:  password authentication failed for user "careplan"', False),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.7", user "careplan", SSL off', False),
        ("fe_sendauth: no password supplied", False),
        ("FATAL:  the database system is starting up", True),
        ("Connection refused\n\tIs the server running on that host?", True),
    ],
)
def test_only_a_refusal_that_time_does_not_change_skips_the_retries(
    answer: str, retried: bool
) -> None:
    """The server's answer as psycopg reports it, from a connection factory standing in for
    the server: credentials are not retried, a server starting up or down is."""
    attempts: list[int] = []

    def connect() -> Any:
        attempts.append(1)
        raise psycopg.OperationalError(f"connection failed: {answer}")

    engine = sa.create_engine("postgresql+psycopg://careplan@db/careplan", creator=connect)
    with pytest.raises(StartupError) as failed:
        wait_for_database(engine, retries=2, backoff=0)
    assert len(attempts) == (3 if retried else 1)
    assert ("refused the connection" in str(failed.value)) is not retried
    assert " ".join(answer.split()) in str(failed.value)


def test_bare_uvicorn_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    """`uvicorn --factory service.main:create_app`: the lifespan raises, uvicorn exits 3 and
    logs the StartupError as one JSON line instead of a traceback."""
    env = cli_env(database_url="mysqlx://db/careplan")
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
         "--port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [
        entry for entry in map(json.loads, result.stdout.splitlines()) if entry["level"] == "ERROR"
    ]
    assert errors[0]["message"].startswith("startup failed: invalid CAREPLAN_DATABASE_URL")
    assert "\n" not in errors[0]["message"]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"database_url": "mysqlx://db/careplan"}, "invalid CAREPLAN_DATABASE_URL"),
        (
            {"database_url": f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x"},
            "unreachable after 1 attempt:",
        ),
        ({"migrate_on_start": False}, "database schema is empty"),
    ],
)
def test_lifespan_raises_startup_error(
    tmp_path: Path, settings: dict[str, object], expected: str
) -> None:
    defaults = {"database_url": f"sqlite:///{tmp_path / 'x.db'}", "db_connect_retries": 0}
    app = create_app(Settings(**(defaults | settings)))
    with pytest.raises(StartupError, match=expected), TestClient(app):
        pass
