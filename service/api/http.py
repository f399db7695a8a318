"""HTTP wire rules for FHIR: media types, bodies, Prefer, ETags, base URL, responses."""

import re
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from fastapi import Request
from fastapi.responses import Response

from service.fhir.bundles import http_date
from service.fhir.errors import fhir_error, information_outcome
from service.fhir.etags import parse_if_match
from service.fhir.json import parse_json
from service.fhir.search import check_characters
from service.settings import Settings
from service.store.repository import Stored

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
_JSON_FORMATS = {"json", FHIR_JSON, JSON, "application/json+fhir", "text/json"}
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# A body larger than this is parsed and checked in a worker thread, and the use case told it is
# large, so that its unit of work runs in one too (Store.arun): that work grows with the body
# (about 1 s for 1 MiB on the 2-core machine of bench/README.md) and would hold up every other
# request on the event loop. Smaller bodies, the usual ones, stay inline, where they cost least.
INLINE_BODY_BYTES = 64 * 1024
T = TypeVar("T")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def base_url(request: Request) -> str:
    configured = settings_of(request).base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


def response_media_type(request: Request) -> str:
    """application/fhir+json unless the client asked for plain JSON; 406 for anything else."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt not in _JSON_FORMATS:
            raise fhir_error(406, "not-supported", f"_format {fmt!r} is not supported; use json")
        return JSON if fmt == JSON else FHIR_JSON
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return FHIR_JSON
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(o in (FHIR_JSON, "application/json+fhir", "*/*", "application/*") for o in offered):
        return FHIR_JSON
    if JSON in offered or "text/json" in offered:
        return JSON
    raise fhir_error(406, "not-supported", f"Cannot produce {accept!r}; this server speaks JSON")


async def negotiate(request: Request) -> None:
    """Router dependency: what no FHIR route takes is refused before anything runs. An
    unsupported Accept/_format answers 406 (a PUT with _format=xml must not write and then
    refuse to answer); a control character in a query parameter 400 (no route's parameter
    may carry one to a database). Async although it does no I/O: FastAPI runs a plain `def`
    dependency in its thread pool, a thread round trip on every request."""
    response_media_type(request)
    for key, value in request.query_params.multi_items():
        check_characters(key, value)


def check_content_type(request: Request, allowed: tuple[str, ...] = (FHIR_JSON, JSON)) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in allowed and content_type != "application/json+fhir":
        raise fhir_error(
            415,
            "not-supported",
            f"Content-Type {content_type or '(none)'!r} is not supported; use {allowed[0]}",
        )


async def read_body(request: Request) -> bytes:
    limit = settings_of(request).max_body_bytes
    declared = request.headers.get("content-length")
    # By length first: int() of thousands of digits raises (and a body that long cannot be).
    if declared and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise fhir_error(413, "too-costly", f"The body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise fhir_error(413, "too-costly", f"The body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> Any:
    check_content_type(request)
    return parse_json(await read_body(request), settings_of(request).max_json_depth)


async def checked_body(request: Request, check: Callable[[Any], T]) -> tuple[T, bool]:
    """The JSON body passed through ``check`` (its validation), and whether it was large."""
    check_content_type(request)
    raw = await read_body(request)
    depth = settings_of(request).max_json_depth

    def parse() -> T:
        return check(parse_json(raw, depth))

    if len(raw) <= INLINE_BODY_BYTES:
        return parse(), False
    return await anyio.to_thread.run_sync(parse), True


def if_match_of(request: Request) -> int | None:
    header = request.headers.get("if-match")
    return None if header is None else parse_if_match(header)


def prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
    return None


def check_id(resource_id: str) -> str:
    if not ID_RE.match(resource_id):
        raise fhir_error(400, "invalid", f"{resource_id!r} is not a valid FHIR id")
    return resource_id


def fhir_response(
    request: Request,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    media_type = response_media_type(request)
    content = b"" if body is None else orjson.dumps(body)
    return Response(
        content=content,
        status_code=status,
        media_type=f"{media_type}; charset=utf-8" if body is not None else None,
        headers=headers,
    )


def resource_headers(request: Request, stored: Stored, location: bool) -> dict[str, str]:
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = (
            f"{base_url(request)}/{stored.type}/{stored.id}/_history/{stored.version}"
        )
    return headers


def write_response(request: Request, stored: Stored, status: int, location: bool) -> Response:
    """Answer a create/update honouring Prefer: return=minimal|representation|OperationOutcome."""
    headers = resource_headers(request, stored, location)
    wanted = prefer(request, "return")
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "operationoutcome":
        verb = "created" if status == 201 else "updated"
        outcome = information_outcome(f"{stored.type}/{stored.id} {verb}, version {stored.version}")
        return fhir_response(request, outcome, status, headers)
    return fhir_response(request, stored.body, status, headers)
