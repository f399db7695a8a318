"""create / update / delete as units of work, shared by the REST routes and Bundles."""

from typing import Any
from urllib.parse import parse_qsl

from service.fhir.errors import fhir_error
from service.fhir.search import parse_search
from service.hooks import Hooks
from service.store.repository import Stored, Tx


def parse_if_none_exist(resource_type: str, criteria: str) -> tuple[Any, list[tuple[str, str]]]:
    text = criteria.split("?", 1)[1] if "?" in criteria else criteria
    items = parse_qsl(text, keep_blank_values=True)
    if not items:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    # Strict: a criterion the server ignored would silently widen the match.
    query = parse_search(resource_type, items, default_count=2, max_count=2, strict=True)
    if not query.clauses:
        raise fhir_error(400, "invalid", "If-None-Exist has no search criteria")
    return query, items


def create(
    tx: Tx,
    hooks: Hooks,
    body: dict[str, Any],
    if_none_exist: str | None = None,
    resource_id: str | None = None,
) -> tuple[Stored, bool]:
    hooks.validate(tx, body)
    if if_none_exist:
        query, items = parse_if_none_exist(body["resourceType"], if_none_exist)
        stored, created = tx.create_conditional(body, query, items, resource_id)
    else:
        stored, created = tx.create(body, resource_id), True
    if created:
        hooks.written(tx, [stored], fresh_ids=resource_id is None)
    return stored, created


def update(
    tx: Tx, hooks: Hooks, body: dict[str, Any], resource_id: str, if_match: int | None
) -> tuple[Stored, bool]:
    hooks.validate(tx, body)
    stored, created = tx.update(body, resource_id, if_match)
    hooks.written(tx, [stored])
    return stored, created


def delete(tx: Tx, hooks: Hooks, resource_type: str, resource_id: str) -> Stored | None:
    stored = tx.delete(resource_type, resource_id)
    if stored is not None:
        hooks.written(tx, [stored])
    return stored
