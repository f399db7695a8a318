"""`careplan serve --host` decides whether the CDS Hooks services may run open: the app reads
its bind address from the settings, so the command line must reach them (the container runs
`careplan serve --host 0.0.0.0` with CAREPLAN_HOST unset)."""

from pathlib import Path

import httpx

from tests.deploy.processes import Service


def _discovery_status(tmp_path: Path, host: str) -> int:
    service = Service(host, tmp_path, host=host, database_url=f"sqlite:///{tmp_path}/{host}.db")
    try:
        service.wait_ready()
        return httpx.get(f"{service.url}/cds-services", timeout=10).status_code
    finally:
        service.stop()


def test_serving_on_all_addresses_requires_the_ehr_jwt(tmp_path: Path) -> None:
    assert _discovery_status(tmp_path, "0.0.0.0") == 401


def test_serving_on_loopback_runs_open(tmp_path: Path) -> None:
    assert _discovery_status(tmp_path, "127.0.0.1") == 200
