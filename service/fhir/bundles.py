"""Build searchset and history Bundles from stored rows (pure: no I/O)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from service.fhir.dates import format_instant, utc_now
from service.fhir.search import SearchQuery
from service.fhir.subset import subset


class Found(Protocol):
    """A resource a search found (the store's rows have this shape)."""

    @property
    def type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def body(self) -> dict[str, Any] | None: ...


class Page(Protocol):
    """One page of a search: its matches, what they include, and the cursors around it."""

    @property
    def matches(self) -> Sequence[Found]: ...
    @property
    def included(self) -> Sequence[Found]: ...
    @property
    def total(self) -> int | None: ...
    @property
    def next_cursor(self) -> str | None: ...
    @property
    def previous_cursor(self) -> str | None: ...


class Version(Found, Protocol):
    """One version of a resource in its history."""

    @property
    def version(self) -> int: ...
    @property
    def last_updated(self) -> datetime: ...
    @property
    def method(self) -> str: ...


def _link(relation: str, url: str) -> dict[str, str]:
    return {"relation": relation, "url": url}


def search_url(
    base: str, path: str, query: SearchQuery, extra: list[tuple[str, str]] | None = None
) -> str:
    """The URL of a search as the server understood it (unknown parameters left out)."""
    params = query.link_params + (extra or [])
    return f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")


def searchset(base: str, query: SearchQuery, page: Page, path: str) -> dict[str, Any]:
    def url(extra: list[tuple[str, str]]) -> str:
        return search_url(base, path, query, extra)

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": format_instant(utc_now())},
    }
    if page.total is not None:
        bundle["total"] = page.total
    links = [_link("self", url([("_cursor", query.cursor)] if query.cursor else []))]
    links.append(_link("first", url([])))
    if page.next_cursor:
        links.append(_link("next", url([("_cursor", page.next_cursor)])))
    if page.previous_cursor:
        links.append(_link("previous", url([("_cursor", page.previous_cursor)])))
    bundle["link"] = links
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{m.type}/{m.id}",
            "resource": subset(m.body or {}, query.summary, query.elements),
            "search": {"mode": "match"},
        }
        for m in page.matches
    ]
    entries += [
        {
            "fullUrl": f"{base}/{i.type}/{i.id}",
            "resource": i.body,
            "search": {"mode": "include"},
        }
        for i in page.included
    ]
    if entries:
        bundle["entry"] = entries
    return bundle


_STATUS = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}


def history(
    base: str,
    path: str,
    entries: Sequence[Version],
    total: int | None,
    link_params: list[tuple[str, str]],
    next_seq: int | None,
) -> dict[str, Any]:
    """A history Bundle; ``total`` None leaves it out (a page filtered for the caller)."""

    def url(extra: list[tuple[str, str]]) -> str:
        params = link_params + extra
        return f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")

    links = [_link("self", url([]))]
    if next_seq is not None:
        links.append(_link("next", url([("_cursor", str(next_seq))])))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    items = []
    for entry in entries:
        item: dict[str, Any] = {"fullUrl": f"{base}/{entry.type}/{entry.id}"}
        if entry.body is not None:
            item["resource"] = entry.body
        item["request"] = {
            "method": entry.method,
            "url": entry.type if entry.method == "POST" else f"{entry.type}/{entry.id}",
        }
        item["response"] = {
            # A PUT that made version 1 created the resource.
            "status": "201 Created" if entry.version == 1 else _STATUS.get(entry.method, "200 OK"),
            "etag": f'W/"{entry.version}"',
            "lastModified": format_instant(entry.last_updated),
        }
        items.append(item)
    if items:
        bundle["entry"] = items
    return bundle


def http_date(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return format_datetime(aware.astimezone(UTC), usegmt=True)
