"""`careplan clients add|list|remove` and `careplan keys rotate`, run as real subprocesses on
a migrated SQLite file; the signing keys encrypted at rest with
CAREPLAN_AUTH_KEY_ENCRYPTION_KEY."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from joserfc import jwk

from service.store.tables import auth_signing_key
from tests.deploy.processes import cli_env, run_cli
from tests.deploy.test_startup import _error_line


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run_cli(["migrate"], cli_env(database_url=url), tmp_path)
    assert result.returncode == 0, result.stderr
    return url


def _jwks_file(tmp_path: Path, private: bool = False) -> Path:
    key = jwk.generate_key("EC", "P-256", parameters={"kid": "hospital-1"})
    path = tmp_path / ("private.json" if private else "jwks.json")
    path.write_text(json.dumps({"keys": [key.as_dict(private=private)]}))
    return path


def test_clients_add_list_remove(tmp_path: Path, database: str) -> None:
    env = cli_env(database_url=database)
    jwks = _jwks_file(tmp_path)
    add = ["clients", "add", "--client-id", "hospital-ehr", "--jwks-file", str(jwks)]
    added = run_cli([*add, "--scope", "system/*.rs system/Observation.c"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    assert "registered hospital-ehr: system/*.rs system/Observation.c" in added.stdout
    by_url = run_cli(
        ["clients", "add", "--client-id", "lab", "--jwks-url", "https://lab.example.org/jwks",
         "--scope", "system/Observation.rs"],
        env, tmp_path,
    )  # fmt: skip
    assert by_url.returncode == 0, by_url.stderr
    listed = run_cli(["clients", "list"], env, tmp_path).stdout.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [
        ["hospital-ehr", "system/*.rs system/Observation.c", "1 key(s) inline"],
        ["lab", "system/Observation.rs", "https://lab.example.org/jwks"],
    ]
    again = run_cli([*add, "--scope", "system/*.rs"], env, tmp_path)
    assert "already registered" in _error_line(again, "clients add")
    removed = run_cli(["clients", "remove", "lab"], env, tmp_path)
    assert removed.returncode == 0 and "removed lab" in removed.stdout
    assert "no client 'lab'" in _error_line(
        run_cli(["clients", "remove", "lab"], env, tmp_path), "clients remove"
    )
    assert len(run_cli(["clients", "list"], env, tmp_path).stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--scope", "system/*.rs", "--jwks-file", "{private}"], "private key material"),
        (["--scope", "launch openid", "--jwks-file", "{public}"], "not resource scopes"),
        (["--scope", "system/*.rs", "--jwks-url", "http://lab.example.org/jwks"], "https"),
        (["--scope", "system/*.rs", "--jwks-file", "{missing}"], "cannot read"),
    ],
)
def test_clients_add_refuses_a_bad_registration(
    tmp_path: Path, database: str, args: list[str], expected: str
) -> None:
    files = {
        "{private}": str(_jwks_file(tmp_path, private=True)),
        "{public}": str(_jwks_file(tmp_path)),
        "{missing}": str(tmp_path / "nothing.json"),
    }
    argv = ["clients", "add", "--client-id", "x", *[files.get(a, a) for a in args]]
    line = _error_line(run_cli(argv, cli_env(database_url=database), tmp_path), "clients add")
    assert expected in line


def _keys(database: str) -> list[sa.Row]:
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(auth_signing_key)).all()
    engine.dispose()
    return list(rows)


def test_keys_rotate_keeps_the_old_key_until_its_tokens_expire(
    tmp_path: Path, database: str
) -> None:
    env = cli_env(database_url=database)
    first = run_cli(["keys", "rotate"], env, tmp_path)
    second = run_cli(["keys", "rotate"], env, tmp_path)
    assert first.returncode == second.returncode == 0
    kids = [line.split()[3].rstrip(";") for line in (first.stdout, second.stdout)]
    rows = {row.kid: row for row in _keys(database)}
    assert set(rows) == set(kids)
    assert rows[kids[0]].superseded_at is not None  # still there: it verifies a while longer
    assert rows[kids[1]].superseded_at is None


def test_signing_keys_are_encrypted_at_rest_with_the_configured_key(
    tmp_path: Path, database: str
) -> None:
    secret = Fernet.generate_key().decode()
    env = cli_env(database_url=database, auth_key_encryption_key=secret)
    assert run_cli(["keys", "rotate"], env, tmp_path).returncode == 0
    (row,) = _keys(database)
    assert row.private_jwk.startswith("fernet:")
    assert '"d"' not in row.private_jwk
    for wrong in ({}, {"auth_key_encryption_key": Fernet.generate_key().decode()}):
        result = run_cli(["serve"], cli_env(database_url=database, **wrong), tmp_path)
        assert "signing keys" in _error_line(result, "serve")
