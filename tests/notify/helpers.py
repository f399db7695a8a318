"""Builders for the subscription tests."""

from typing import Any

from service.notify.subscription import (
    CONTENT_EXTENSION,
    FILTER_EXTENSION,
    HEARTBEAT_EXTENSION,
    MAX_COUNT_EXTENSION,
    SECRET_EXTENSION,
    TIMEOUT_EXTENSION,
)
from service.notify.topics import TOPICS

SECRET = "a-signing-secret-of-forty-characters-00"


def subscription(
    endpoint: str,
    topic: str = "decision-made",
    *,
    filters: tuple[str, ...] = (),
    content: str = "id-only",
    secret: str | None = SECRET,
    heartbeat: int | None = None,
    timeout: int | None = None,
    max_count: int | None = None,
    status: str = "requested",
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A Subscription with the R4 backport profile's elements."""
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": CONTENT_EXTENSION, "valueCode": content}]},
    }
    extensions: list[dict[str, Any]] = []
    if heartbeat is not None:
        extensions.append({"url": HEARTBEAT_EXTENSION, "valueUnsignedInt": heartbeat})
    if timeout is not None:
        extensions.append({"url": TIMEOUT_EXTENSION, "valueUnsignedInt": timeout})
    if max_count is not None:
        extensions.append({"url": MAX_COUNT_EXTENSION, "valuePositiveInt": max_count})
    if secret is not None:
        extensions.append({"url": SECRET_EXTENSION, "valueString": secret})
    if extensions:
        channel["extension"] = extensions
    if headers:
        channel["header"] = list(headers)
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {
            "profile": [
                "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "backport-subscription"
            ]
        },
        "status": status,
        "reason": "Scheduling: book the retry and the clinician visit",
        "criteria": TOPICS[topic].url,
        "channel": channel,
    }
    if filters:
        body["_criteria"] = {
            "extension": [{"url": FILTER_EXTENSION, "valueString": f} for f in filters]
        }
    return body
