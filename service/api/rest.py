"""FHIR REST interactions for every stored resource type, one explicit route per type.

Routes are generated per type (rather than one ``/{type}`` route) so the OpenAPI document has
an operation per type and interaction, and the CapabilityStatement can be read off the routes.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

from service.api import subscriptions as subscription_routes
from service.api.audit import audit_of
from service.api.http import (
    base_url,
    check_content_type,
    check_id,
    checked_body,
    fhir_response,
    if_match_of,
    negotiate,
    prefer,
    read_body,
    resource_headers,
    settings_of,
    write_response,
)
from service.api.openapi.operations import interaction_docs
from service.api.openapi.security import security_for
from service.api.security import caller_of, guard
from service.audit.events import RESOURCE_TYPE as AUDIT_EVENT
from service.auth.permissions import Interaction, interaction_need
from service.fhir import bundles
from service.fhir.dates import parse_range
from service.fhir.errors import fhir_error
from service.fhir.search import SUMMARY_VALUES, SearchLimits, parse_count, parse_search
from service.fhir.search_params import SEARCH_PARAMS
from service.fhir.subset import subset
from service.fhir.validate import validate_resource
from service.store.runner import Store
from service.usecases import crud

RESOURCE_TYPES: tuple[str, ...] = tuple(SEARCH_PARAMS)
# Types the API reads but never writes (crud.check_writable refuses them in Bundles too).
READ_ONLY_TYPES = frozenset({AUDIT_EVENT})
_WRITES = frozenset({"create", "update", "delete"})
# A version, page size or cursor: ASCII digits that fit a 64-bit SQL integer.
DIGITS_RE = re.compile(r"^[0-9]{1,18}$")
Handler = Callable[..., Awaitable[Response]]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def route_name(interaction: str, resource_type: str | None = None) -> str:
    """Route names the CapabilityStatement reads: fhir:<interaction>[:<type>]."""
    return f"fhir:{interaction}:{resource_type}" if resource_type else f"fhir:{interaction}"


# --- handlers, one factory per interaction -------------------------------------------------


def _read(resource_type: str) -> Handler:
    async def read(request: Request, id: str) -> Response:
        check_id(id)
        summary = request.query_params.get("_summary")
        if summary is not None and summary not in SUMMARY_VALUES:
            raise fhir_error(400, "invalid", f"_summary must be one of {sorted(SUMMARY_VALUES)}")
        stored = await crud.read(
            store_of(request), resource_type, id, caller_of(request), audit_of(request)
        )
        elements = request.query_params.get("_elements")
        body = subset(stored.body or {}, summary, elements.split(",") if elements else None)
        return fhir_response(request, body, 200, resource_headers(request, stored, False))

    return read


def _vread(resource_type: str) -> Handler:
    async def vread(request: Request, id: str, vid: str) -> Response:
        check_id(id)
        # ASCII digits only (str.isdigit() accepts "²"), and small enough for an SQL integer.
        if not DIGITS_RE.match(vid):
            raise fhir_error(404, "not-found", f"Version {vid!r} is not known")
        entry = await crud.vread(
            store_of(request), resource_type, id, int(vid), caller_of(request), audit_of(request)
        )
        headers = {
            "ETag": f'W/"{entry.version}"',
            "Last-Modified": bundles.http_date(entry.last_updated),
        }
        return fhir_response(request, entry.body, 200, headers)

    return vread


def _create(resource_type: str) -> Handler:
    async def create(request: Request) -> Response:
        body, large = await checked_body(request, lambda v: validate_resource(v, resource_type))
        body.pop("id", None)  # the server assigns ids on create
        if_none_exist = request.headers.get("if-none-exist")
        store, limits = store_of(request), search_limits(request)
        stored, created = await crud.create(
            store, body, if_none_exist, caller_of(request), limits, audit_of(request), long=large
        )
        return write_response(request, stored, 201 if created else 200, location=created)

    return create


def _update(resource_type: str) -> Handler:
    async def update(request: Request, id: str) -> Response:
        check_id(id)
        if_match = if_match_of(request)
        body, large = await checked_body(request, lambda v: validate_resource(v, resource_type))
        if body.get("id") != id:
            raise fhir_error(
                400,
                "invalid",
                f"The body's id {body.get('id')!r} does not match the URL id {id!r}",
                "id",
            )
        stored, created = await crud.update(
            store_of(request), body, id, if_match, caller_of(request), audit_of(request), long=large
        )
        return write_response(request, stored, 201 if created else 200, location=True)

    return update


def _delete(resource_type: str) -> Handler:
    async def delete(request: Request, id: str) -> Response:
        check_id(id)
        stored = await crud.delete(
            store_of(request), resource_type, id, caller_of(request), audit_of(request)
        )
        headers = {"ETag": stored.etag} if stored else {}
        return Response(status_code=204, headers=headers)

    return delete


def search_limits(request: Request) -> SearchLimits:
    settings = settings_of(request)
    return SearchLimits(settings.max_search_clauses, settings.max_search_values)


def _search_items(
    request: Request, form: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    items = list(request.query_params.multi_items())
    return items + (form or [])


async def _run_search(
    request: Request, resource_type: str, items: list[tuple[str, str]], form: str = ""
) -> Response:
    settings = settings_of(request)
    base = base_url(request)
    query = parse_search(
        resource_type,
        items,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        strict=prefer(request, "handling") == "strict",
        base_url=base,
        limits=search_limits(request),
    )
    audit = audit_of(request, form=form)
    answer = await crud.search(store_of(request), query, base, caller_of(request), audit)
    return fhir_response(request, answer)


def _search(resource_type: str) -> Handler:
    async def search(request: Request) -> Response:
        return await _run_search(request, resource_type, _search_items(request))

    return search


def _search_post(resource_type: str) -> Handler:
    async def search_post(request: Request) -> Response:
        raw = await read_body(request)
        if raw or request.headers.get("content-type"):
            # An empty POST _search (all parameters in the URL) needs no Content-Type.
            check_content_type(request, ("application/x-www-form-urlencoded",))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise fhir_error(400, "structure", "The form body is not UTF-8") from None
        form = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
        return await _run_search(request, resource_type, _search_items(request, form), text)

    return search_post


def history_params(request: Request) -> tuple[Any, int, int | None, list[tuple[str, str]]]:
    settings = settings_of(request)
    since = None
    link_params: list[tuple[str, str]] = []
    since_text = request.query_params.get("_since")
    if since_text:
        try:
            since = parse_range(since_text)[0]
        except ValueError as exc:
            raise fhir_error(400, "invalid", f"_since: {exc}") from None
        link_params.append(("_since", since_text))
    count_text = request.query_params.get("_count")
    count = settings.default_page_size
    if count_text is not None:
        count = parse_count(count_text, settings.max_page_size)
        link_params.append(("_count", count_text))
    cursor = request.query_params.get("_cursor")
    if cursor is not None and not DIGITS_RE.match(cursor):
        raise fhir_error(400, "invalid", "Invalid paging cursor")
    return since, count, int(cursor) if cursor else None, link_params


async def history_response(
    request: Request, resource_type: str | None, resource_id: str | None, path: str
) -> Response:
    since, count, cursor, link_params = history_params(request)
    bundle = await crud.history(
        store_of(request),
        base_url(request),
        path,
        (resource_type, resource_id),
        since,
        count,
        cursor,
        link_params,
        caller_of(request),
        audit_of(request),
    )
    return fhir_response(request, bundle)


def _type_history(resource_type: str) -> Handler:
    async def type_history(request: Request) -> Response:
        return await history_response(request, resource_type, None, f"{resource_type}/_history")

    return type_history


def _instance_history(resource_type: str) -> Handler:
    async def instance_history(request: Request, id: str) -> Response:
        check_id(id)
        return await history_response(request, resource_type, id, f"{resource_type}/{id}/_history")

    return instance_history


# --- registration --------------------------------------------------------------------------

# (interaction, method, path suffix, factory, status, what it needs); order matters: literal
# segments first.
_INTERACTIONS: list[tuple[str, str, str, Callable[[str], Handler], int, Interaction]] = [
    ("history-type", "GET", "/_history", _type_history, 200, Interaction.HISTORY),
    ("search-type", "GET", "", _search, 200, Interaction.SEARCH),
    ("search-type-post", "POST", "/_search", _search_post, 200, Interaction.SEARCH),
    ("create", "POST", "", _create, 201, Interaction.CREATE),
    ("history-instance", "GET", "/{id}/_history", _instance_history, 200, Interaction.HISTORY),
    ("vread", "GET", "/{id}/_history/{vid}", _vread, 200, Interaction.VREAD),
    ("read", "GET", "/{id}", _read, 200, Interaction.READ),
    ("update", "PUT", "/{id}", _update, 200, Interaction.UPDATE),
    ("delete", "DELETE", "/{id}", _delete, 204, Interaction.DELETE),
]


# Writes a type's own routes handle: a Subscription's channel is checked and its signing secret
# kept out of the stored resource (api/subscriptions.py).
_OWN_HANDLERS: dict[tuple[str, str], Callable[[str], Handler]] = {
    ("create", "Subscription"): subscription_routes.create_handler,
    ("update", "Subscription"): subscription_routes.update_handler,
}


class TypeRouter(APIRouter):
    """The interactions of one resource type, all under /fhir/<type>.

    FastAPI (0.165) matches a request by trying each route of each included router in turn,
    each twice (once to select the router, once inside it): with all types in one router a
    create of the 9th type made 181 tries, a fifth of a plain create's CPU. A path outside
    /fhir/<type> is refused here at once (19 tries). Routing does not depend on it: none of
    these routes could match such a path.
    """

    def __init__(self, resource_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path_prefix = f"/fhir/{resource_type}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = get_route_path(scope)
        if path != self.path_prefix and not path.startswith(f"{self.path_prefix}/"):
            return Match.NONE, {}
        return super().matches(scope)


def resource_routers() -> list[TypeRouter]:
    """One router per type, each included by the app itself: nesting them in one more router
    would make FastAPI walk that level too, twice per request."""
    return [type_router(resource_type) for resource_type in RESOURCE_TYPES]


def type_router(resource_type: str) -> TypeRouter:
    router = TypeRouter(resource_type)
    for interaction, method, suffix, factory, status, needs in _INTERACTIONS:
        if resource_type in READ_ONLY_TYPES and interaction in _WRITES:
            continue  # no route: the method answers 405 (and the CapabilityStatement omits it)
        docs = interaction_docs(interaction, resource_type)
        need = interaction_need(needs, resource_type)
        factory = _OWN_HANDLERS.get((interaction, resource_type), factory)
        router.add_api_route(
            f"/fhir/{resource_type}{suffix}",
            factory(resource_type),
            methods=[method],
            name=route_name(interaction, resource_type),
            tags=[resource_type],
            status_code=status,
            response_class=Response,
            # The token first: a caller without one learns nothing else (not even a 406).
            dependencies=[Depends(guard(need)), Depends(negotiate)],
            openapi_extra={**docs.pop("openapi_extra", {}), "security": security_for(need)},
            **docs,
        )
    return router
