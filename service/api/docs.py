"""Offline API docs: /docs (Swagger UI) with its JS and CSS served by the service.

Hospital networks are often closed, so nothing is loaded from a CDN. The assets come from the
pinned ``fastapi-offline`` package; we use only its static files.

No ReDoc: it renders the whole document into the page up front and never finished with this
one (some 800 KB: every type's interactions and typed schemas). Swagger UI renders an
operation when it is opened. /redoc sends old bookmarks to /docs.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from service.api.openapi import operations as openapi_docs

ASSETS_PREFIX = "/docs/assets"
_ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _openapi_url(request: Request) -> str:
    return request.app.openapi_url or "/openapi.json"


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
        # "Authorize" takes a bearer token (openapi/security.py); keep it across reloads so
        # "Try it out" keeps working while one explores.
        swagger_ui_parameters={"persistAuthorization": True},
    )


@router.get("/redoc")
def redoc() -> RedirectResponse:
    return RedirectResponse("/docs", status_code=302)


def _asset_route(name: str, media_type: str) -> None:
    def asset() -> FileResponse:
        return FileResponse(
            assets_dir() / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    router.add_api_route(f"{ASSETS_PREFIX}/{name}", asset, methods=["GET"], name=f"docs:{name}")


for _name, _type in _ASSETS.items():
    _asset_route(_name, _type)


def install(app: FastAPI) -> None:
    """Mount /docs and its assets, /redoc's redirect, and the typed OpenAPI document builder."""
    openapi_docs.install(app)
    app.include_router(router)
