"""/docs works offline: every script, style and image comes from the service. /redoc sends
browsers to /docs (ReDoc never finished rendering this document)."""

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings


@pytest.fixture
def docs_client(sqlite_template: Path, tmp_path: Path) -> Any:
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    app = create_app(Settings(database_url=f"sqlite:///{path}", db_connect_retries=0))
    with TestClient(app) as client:
        yield client


def test_docs_reference_only_local_assets(docs_client: TestClient) -> None:
    page = "/docs"
    response = docs_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""(?:url|spec-url)\s*:\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""spec-url=["']([^"']+)["']""", html)
    assert urls, html
    assert not re.search(r"https?://(?!www\.w3\.org)", html), "a remote URL in " + page
    for url in set(urls):
        assert url.startswith("/"), f"{page} references {url}"
        asset = docs_client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert "/openapi.json" in html


def test_assets_have_types(docs_client: TestClient) -> None:
    js = docs_client.get("/docs/assets/swagger-ui-bundle.js")
    css = docs_client.get("/docs/assets/swagger-ui.css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert css.headers["content-type"].startswith("text/css")
    assert docs_client.get("/docs/assets/nope.js").status_code == 404


def test_the_docs_page_tries_calls_with_a_token(docs_client: TestClient) -> None:
    """Swagger UI offers "Authorize" for the bearer scheme and keeps the token it was given,
    so "Try it out" sends it."""
    assert '"persistAuthorization": true' in docs_client.get("/docs").text
    schemes = docs_client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearerToken"]["scheme"] == "bearer"


def test_redoc_redirects_to_swagger_ui(docs_client: TestClient) -> None:
    response = docs_client.get("/redoc", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/docs"
    assert docs_client.get("/docs/assets/redoc.standalone.js").status_code == 404
    assert "redoc" not in docs_client.get("/openapi.json").text.lower()
