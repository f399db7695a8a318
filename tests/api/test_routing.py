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


def test_the_base_url_works_with_a_trailing_slash(client: FhirClient) -> None:
    """Many clients are configured with `.../fhir/`: every route answers with or without the
    slash, directly (a 307 would make a client that does not follow redirects lose its body)."""
    transaction = {"resourceType": "Bundle", "type": "transaction"}
    posted = client.post("/fhir/", json=transaction, follow_redirects=False)
    assert posted.status_code == 200, posted.text
    assert posted.json()["type"] == "transaction-response"
    assert client.get("/fhir/metadata/", follow_redirects=False).status_code == 200
    created = client.post(
        "/fhir/Patient/", json={"resourceType": "Patient"}, follow_redirects=False
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    read = client.get(f"/fhir/Patient/{pid}/", follow_redirects=False)
    assert read.status_code == 200 and read.json()["id"] == pid
    found = client.get("/fhir/Patient/?_id=" + pid, follow_redirects=False)
    assert found.status_code == 200 and found.json()["total"] == 1
    history = client.get(f"/fhir/Patient/{pid}/_history/", follow_redirects=False)
    assert history.status_code == 200 and history.json()["type"] == "history"
    assert client.get("/healthz/", follow_redirects=False).status_code == 200


def test_no_route_answers_a_redirect(client: FhirClient) -> None:
    for path in ("/fhir/Nope/", "/nope/", "/fhir/Patient/a/b/c/"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)


def test_a_trailing_slash_is_counted_under_its_route(client: FhirClient) -> None:
    from service.observability import METRICS

    labels = {"method": "GET", "route": "/fhir/metadata", "status": "200"}
    before = METRICS.registry.get_sample_value("careplan_http_requests_total", labels) or 0
    assert client.get("/fhir/metadata/").status_code == 200
    after = METRICS.registry.get_sample_value("careplan_http_requests_total", labels)
    assert after == before + 1
