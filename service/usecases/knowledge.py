"""Load the shipped protocol definitions into the store, idempotent by canonical url + version."""

import logging
from typing import Any

from service.fhir.search import parse_search
from service.fhir.validate import validate_resource
from service.protocol.definitions import load_shipped_definitions
from service.store.repository import Tx
from service.store.runner import Store

logger = logging.getLogger("careplan.knowledge")


def _existing_id(tx: Tx, resource_type: str, url: str, version: str) -> str | None:
    query = parse_search(
        resource_type, [("url", url), ("version", version)], default_count=1, max_count=1
    )
    ids = tx.search_ids(query, limit=1)
    return ids[0] if ids else None


def load_definitions(store: Store, definitions: list[dict[str, Any]]) -> list[str]:
    """Store each definition unless its url|version is already there; returns what was added.

    A new version is added beside the old one, never over it: when the shipped id is taken by
    another version, the new one gets ``<id>-<version>``.
    """

    def unit(tx: Tx) -> list[str]:
        added = []
        for definition in definitions:
            body = validate_resource(definition)
            resource_type, url, version = body["resourceType"], body["url"], body["version"]
            if _existing_id(tx, resource_type, url, version):
                continue
            resource_id = body.get("id")
            if not resource_id or tx.get(resource_type, resource_id) is not None:
                resource_id = f"{resource_id or resource_type.lower()}-{version}".replace(".", "-")
            tx.create(body, resource_id)
            added.append(f"{resource_type}/{resource_id} ({url}|{version})")
        return added

    added = store.run(unit)
    for item in added:
        logger.info("loaded definition %s", item)
    return added


def shipped_definitions() -> list[dict[str, Any]]:
    return load_shipped_definitions()
