"""Finding a request's route costs the same for every resource type (TypeRouter in
service/api/rest.py): FastAPI tries routes one by one, and before the type routers a create
of the ninth type tried ~180 routes, a fifth of a plain create's CPU (bench/README.md)."""

from typing import Any

import fastapi.routing
import pytest
from starlette.routing import Match

from service.api.rest import READ_ONLY_TYPES, RESOURCE_TYPES
from tests.conftest import FhirClient


def _tries(
    client: FhirClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str, status: int = 0
) -> int:
    """How many routes FastAPI tried for one request (and that it was routed: not 404/405,
    unless `status` says what to expect)."""
    tried = 0
    original = fastapi.routing.APIRoute.matches

    def counting(route: fastapi.routing.APIRoute, scope: Any) -> tuple[Match, Any]:
        nonlocal tried
        tried += 1
        return original(route, scope)

    with monkeypatch.context() as patch:
        patch.setattr(fastapi.routing.APIRoute, "matches", counting)
        response = client.request(method, path, content=b"{")
    expected = status or (400 if method == "POST" else 404)
    assert response.status_code == expected, response.text
    return tried


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", ""), ("GET", "/missing"), ("GET", "/missing/_history/1")],
)
def test_every_type_is_routed_with_the_same_number_of_tries(
    client: FhirClient, monkeypatch: pytest.MonkeyPatch, method: str, suffix: str
) -> None:
    writable = [t for t in RESOURCE_TYPES if t not in READ_ONLY_TYPES]
    tries = {t: _tries(client, monkeypatch, method, f"/fhir/{t}{suffix}") for t in writable}
    assert len(tries) > 10
    assert len(set(tries.values())) == 1, tries
    # A read-only type (AuditEvent) has no write routes: a read is no dearer to route, and a
    # POST finds its path without its method (405, after trying every route like any 405).
    for resource_type in READ_ONLY_TYPES:
        path = f"/fhir/{resource_type}{suffix}"
        if method == "POST":
            _tries(client, monkeypatch, method, path, 405)
        else:
            assert _tries(client, monkeypatch, method, path) <= min(tries.values())
