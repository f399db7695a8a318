"""deploy/compose.yaml: start order, health checks, one-shot migration, no inline secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import DEPLOY, REPO_ROOT

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "app"}
    return services


def test_db_is_postgres_with_healthcheck_and_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    db = services["db"]
    assert db["image"] == "postgres:15-alpine"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume, _, target = db["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"], "data must live in a named volume"
    assert "ports" not in db, "the database is reachable on the compose network only"


def test_migrate_is_one_shot_after_healthy_db(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["careplan", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "ports" not in migrate


def test_app_starts_after_migration_and_has_healthcheck(services: dict[str, Any]) -> None:
    app = services["app"]
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert app["depends_on"]["db"] == {"condition": "service_healthy"}
    assert "8000:8000" in app["ports"]
    test = app["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "/healthz" in test[3]
    compile(test[3], "<healthcheck>", "exec")


def test_app_and_migrate_share_image_and_settings(services: dict[str, Any]) -> None:
    app, migrate = services["app"], services["migrate"]
    assert app["image"] == migrate["image"]
    assert app["build"] == migrate["build"]
    assert app["environment"] == migrate["environment"]
    build = app["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build["dockerfile"]).is_file()


def test_environment(services: dict[str, Any]) -> None:
    env = services["app"]["environment"]
    url = env["CAREPLAN_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://")
    assert "@db:5432/" in url
    # Compose's own migrate service owns the schema.
    assert env["CAREPLAN_MIGRATE_ON_START"] == "false"
    assert all(isinstance(v, str) for v in env.values()), "compose wants string env values"


def test_no_password_in_the_file(services: dict[str, Any]) -> None:
    password = services["db"]["environment"]["POSTGRES_PASSWORD"]
    # Required variable: compose refuses to start without it, and nothing is committed.
    assert password.startswith("${POSTGRES_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in services["app"]["environment"]["CAREPLAN_DATABASE_URL"]


def test_graceful_stop_outlasts_the_drain(services: dict[str, Any]) -> None:
    app = services["app"]
    drain = int(app["environment"]["CAREPLAN_GRACEFUL_SHUTDOWN_SECONDS"])
    stop = re.fullmatch(r"(\d+)s", app["stop_grace_period"])
    assert stop is not None
    assert int(stop.group(1)) > drain


def test_hardening(services: dict[str, Any]) -> None:
    for name in ("app", "migrate"):
        service = services[name]
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_interpolations_are_well_formed() -> None:
    text = Path(COMPOSE).read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for match in re.finditer(r"(?<!\$)\$\{([^}]*)\}", body):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*((:?[-?+]).*)?", match.group(1)), match.group(0)
    assert "${" not in re.sub(r"\$\{[^}]*\}", "", body.replace("$${", "")), "unclosed ${"


def test_tokens_are_required_and_the_auth_settings_come_from_outside(
    services: dict[str, Any],
) -> None:
    env = services["app"]["environment"]
    assert env["CAREPLAN_AUTH"] == "required"
    # The trusted issuers (a Keycloak realm, an EHR): from the environment, none by default.
    assert env["CAREPLAN_AUTH_ISSUERS"] == "${CAREPLAN_AUTH_ISSUERS:-[]}"
    # The key that encrypts the signing keys at rest: required, never in the file.
    assert env["CAREPLAN_AUTH_KEY_ENCRYPTION_KEY"].startswith(
        "${CAREPLAN_AUTH_KEY_ENCRYPTION_KEY:?"
    )
    assert env["CAREPLAN_METRICS_TOKEN"].startswith("${CAREPLAN_METRICS_TOKEN")
