"""CAREPLAN_AUTH at start-up: ``off`` off loopback is refused with one line and exit code 2;
``auto`` on loopback runs open and says so in a WARNING; ``auto`` anywhere else, and
``required``, ask for tokens. The services here are real ``careplan serve`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.main import StartupError, create_app
from service.settings import Settings
from tests.deploy.processes import Service, cli_env, free_port, run_cli
from tests.deploy.test_startup import _error_line


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'auth.db'}"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_off_is_refused_unless_bound_to_loopback(tmp_path: Path, host: str) -> None:
    env = cli_env(database_url=_sqlite(tmp_path), auth="off", port=free_port())
    line = _error_line(run_cli(["serve", "--host", host], env, tmp_path), "serve")
    assert f"CAREPLAN_AUTH=off is refused: the service is bound to {host}" in line
    assert not (tmp_path / "auth.db").exists()  # refused before touching the database


def test_off_from_the_environment_host_is_refused_in_process(tmp_path: Path) -> None:
    settings = Settings(database_url=_sqlite(tmp_path), auth="off", host="0.0.0.0")
    with pytest.raises(StartupError, match="CAREPLAN_AUTH=off is refused"):
        create_app(settings)


def test_under_plain_uvicorn_off_off_loopback_never_serves(tmp_path: Path) -> None:
    env = cli_env(database_url=_sqlite(tmp_path), auth="off", host="0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
         "--port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "CAREPLAN_AUTH=off is refused" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("issuers", "expected"),
    [
        ("not json", "CAREPLAN_AUTH_ISSUERS: trusted issuers: not JSON"),
        ('[{"issuer": "https://idp.example.org"}]', "give exactly one of jwks_uri and jwks"),
        (
            '[{"issuer": "https://idp.example.org", "jwks_uri": "https://idp.example.org/k"}]',
            "has no audience and CAREPLAN_BASE_URL is empty",
        ),
        (
            '[{"issuer": "https://idp.example.org", "jwks_uri": "http://idp.example.org/k",'
            ' "audience": "https://x"}]',
            "https",
        ),
    ],
)
def test_unusable_issuer_configuration_is_one_line(
    tmp_path: Path, issuers: str, expected: str
) -> None:
    env = cli_env(database_url=_sqlite(tmp_path), auth_issuers=issuers, port=free_port())
    assert expected in _error_line(run_cli(["serve"], env, tmp_path), "serve")


def test_a_malformed_key_encryption_key_is_one_line(tmp_path: Path) -> None:
    env = cli_env(database_url=_sqlite(tmp_path), auth_key_encryption_key="short")
    line = _error_line(run_cli(["serve"], env, tmp_path), "serve")
    assert "CAREPLAN_AUTH_KEY_ENCRYPTION_KEY must be urlsafe base64 of 32 bytes" in line


def _fhir_status(service: Service) -> int:
    return httpx.get(f"{service.url}/fhir/Patient", timeout=10).status_code


def test_auto_on_loopback_runs_open_and_warns(tmp_path: Path) -> None:
    service = Service("open", tmp_path, database_url=_sqlite(tmp_path), auth="auto")
    try:
        service.wait_ready()
        assert _fhir_status(service) == 200
        metrics = httpx.get(f"{service.url}/metrics", timeout=10)
        assert metrics.status_code == 200
    finally:
        service.stop()
    warnings = [
        entry
        for entry in map(json.loads, filter(None, service.log_path.read_text().splitlines()))
        if entry["level"] == "WARNING" and "tokens are not required" in entry["message"]
    ]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0]["message"]


def test_required_on_loopback_asks_for_tokens(tmp_path: Path) -> None:
    service = Service("closed", tmp_path, database_url=_sqlite(tmp_path), auth="required")
    try:
        service.wait_ready()
        refused = httpx.get(f"{service.url}/fhir/Patient", timeout=10)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert httpx.get(f"{service.url}/metrics", timeout=10).status_code == 401
        assert httpx.get(f"{service.url}/fhir/metadata", timeout=10).status_code == 200
    finally:
        service.stop()
    assert "tokens are not required" not in service.log_path.read_text()


def test_auto_asks_for_tokens_when_told_it_is_bound_elsewhere(tmp_path: Path) -> None:
    """A process started with CAREPLAN_HOST=0.0.0.0 (here listening on loopback only, to
    keep the test off the network) asks for tokens: it believes it is reachable."""
    settings = Settings(database_url=_sqlite(tmp_path), auth="auto", host="0.0.0.0")
    with TestClient(create_app(settings)) as client:
        assert client.get("/fhir/Patient").status_code == 401


def test_auto_asks_remote_callers_for_tokens_even_when_configured_for_loopback(
    tmp_path: Path,
) -> None:
    """The TestClient's requests come in on "testserver", not a loopback address: a process
    started by hand on 0.0.0.0 without CAREPLAN_HOST still asks such callers for tokens."""
    settings = Settings(database_url=_sqlite(tmp_path), auth="auto", host="127.0.0.1")
    with TestClient(create_app(settings)) as client:
        assert client.get("/fhir/Patient").status_code == 401
