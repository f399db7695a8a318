"""The Subscription resource as this service reads it: R4 with the backport profile.

``criteria`` is the topic's canonical URL, with the IG's filter-criteria extensions on it
(``_criteria.extension`` in JSON); ``channel.type`` is ``rest-hook`` with an ``endpoint``,
``header``s ("Name: value", sent with every notification) and ``payload``
``application/fhir+json`` whose content extension (on ``_payload``) is ``empty``, ``id-only`` or
``full-resource``; the channel's extensions give ``heartbeatPeriod``, ``timeout`` and
``maxCount``. The signing secret comes in this service's own extension on the channel
(``SECRET_EXTENSION``) and is taken out before the resource is stored: it is never read back.
"""

import re
from dataclasses import dataclass
from typing import Any

from service.notify import endpoints
from service.notify.topics import BY_URL, Criteria, CriteriaError, Topic, parse_criteria
from service.protocol.codes import STRUCTURE_DEFINITION_BASE

Json = dict[str, Any]
IG = "http://hl7.org/fhir/uv/subscriptions-backport"
PROFILE = f"{IG}/StructureDefinition/backport-subscription"
FILTER_EXTENSION = f"{IG}/StructureDefinition/backport-filter-criteria"
CONTENT_EXTENSION = f"{IG}/StructureDefinition/backport-payload-content"
HEARTBEAT_EXTENSION = f"{IG}/StructureDefinition/backport-heartbeat-period"
TIMEOUT_EXTENSION = f"{IG}/StructureDefinition/backport-timeout"
MAX_COUNT_EXTENSION = f"{IG}/StructureDefinition/backport-max-count"
CHANNEL_TYPE_EXTENSION = f"{IG}/StructureDefinition/backport-channel-type"
SECRET_EXTENSION = f"{STRUCTURE_DEFINITION_BASE}/subscription-signing-secret"
STATUS_OPERATION = f"{IG}/OperationDefinition/backport-subscription-status"
EVENTS_OPERATION = f"{IG}/OperationDefinition/backport-subscription-events"
TOPIC_EXTENSION = f"{IG}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"

CONTENTS = ("empty", "id-only", "full-resource")
PAYLOAD_TYPES = ("application/fhir+json", "application/json")
SECRET_LENGTH = (32, 255)
TIMEOUT_SECONDS = (1, 120)
DEFAULT_TIMEOUT = 10
MAX_COUNT = 100
DEFAULT_MAX_COUNT = 1
MIN_HEARTBEAT = 1
_HEADER = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)$")
# Set by the worker itself: a subscriber's header may not replace them.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-careplan-signature",
    }
)


@dataclass(frozen=True)
class Problem:
    expression: str
    message: str


@dataclass(frozen=True)
class Spec:
    """What a Subscription asks for, checked."""

    topic: Topic
    criteria: Criteria
    filters: tuple[str, ...]
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    content: str
    heartbeat: int | None
    timeout: int
    max_count: int
    status: str
    secret: str | None


def _extensions(element: Any, url: str) -> list[tuple[int, Json]]:
    found = element.get("extension") if isinstance(element, dict) else None
    return [
        (i, e) for i, e in enumerate(found or []) if isinstance(e, dict) and e.get("url") == url
    ]


def _one(element: Any, url: str, key: str) -> tuple[int, Any] | None:
    found = _extensions(element, url)
    return (found[0][0], found[0][1].get(key)) if found else None


def _integer(
    channel: Json, url: str, name: str, low: int, high: int | None, problems: list[Problem]
) -> int | None:
    found = _one(channel, url, "valuePositiveInt" if name == "maxCount" else "valueUnsignedInt")
    if found is None:
        return None
    index, value = found
    where = f"Subscription.channel.extension[{index}]"
    if not isinstance(value, int) or isinstance(value, bool):
        kind = "positiveInt" if name == "maxCount" else "unsignedInt"
        problems.append(Problem(where, f"{name} must be a value{kind[0].upper()}{kind[1:]}"))
        return None
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f"at least {low}"
        problems.append(Problem(where, f"{name} {value} is not supported ({bound})"))
        return None
    return value


def _headers(channel: Json, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    found = []
    for index, text in enumerate(channel.get("header") or []):
        where = f"Subscription.channel.header[{index}]"
        match = _HEADER.match(text) if isinstance(text, str) else None
        if match is None:
            problems.append(Problem(where, "a header is 'Name: value' on one line"))
            continue
        if match[1].lower() in _RESERVED_HEADERS:
            problems.append(Problem(where, f"the header {match[1]} is set by the server"))
            continue
        found.append((match[1], match[2].strip()))
    return tuple(found)


def _topic(body: Json, problems: list[Problem]) -> tuple[Topic | None, tuple[str, ...], Criteria]:
    criteria = body.get("criteria")
    topic = BY_URL.get(criteria) if isinstance(criteria, str) else None
    if topic is None:
        problems.append(
            Problem(
                "Subscription.criteria",
                f"topic {criteria!r} is not supported: criteria must be one of "
                + ", ".join(sorted(BY_URL)),
            )
        )
    wrapper = body.get("_criteria")
    filters: list[str] = []
    for index, extension in _extensions(wrapper, FILTER_EXTENSION):
        value = extension.get("valueString")
        if not isinstance(value, str):
            problems.append(
                Problem(
                    f"Subscription.criteria.extension[{index}]",
                    "filter criteria are a valueString",
                )
            )
            continue
        filters.append(value)
    others = [
        e.get("url")
        for e in (wrapper or {}).get("extension") or []
        if isinstance(e, dict) and e.get("url") != FILTER_EXTENSION
    ]
    for url in others:
        problems.append(Problem("Subscription.criteria.extension", f"{url} is not supported"))
    parsed = Criteria()
    if topic is not None:
        try:
            parsed = parse_criteria(topic, filters)
        except CriteriaError as exc:
            problems.append(Problem("Subscription.criteria.extension", str(exc)))
    return topic, tuple(filters), parsed


def _channel(
    body: Json, prefixes: tuple[str, ...] | None, problems: list[Problem]
) -> tuple[str, str, str | None]:
    """(endpoint, content, secret) of a rest-hook channel."""
    channel = body.get("channel") or {}
    if channel.get("type") != "rest-hook" or _extensions(
        body.get("channel", {}).get("_type"), CHANNEL_TYPE_EXTENSION
    ):
        problems.append(
            Problem(
                "Subscription.channel.type",
                f"channel type {channel.get('type')!r} is not supported: only rest-hook",
            )
        )
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str):
        problems.append(Problem("Subscription.channel.endpoint", "a rest-hook needs an endpoint"))
        endpoint = ""
    else:
        why = endpoints.problem(endpoint)
        if why is not None:
            problems.append(Problem("Subscription.channel.endpoint", why))
        elif prefixes is not None and not endpoints.allowed(endpoint, prefixes):
            problems.append(
                Problem(
                    "Subscription.channel.endpoint",
                    f"endpoint {endpoint} is not allowed: it must start with one of the URL "
                    "prefixes in CAREPLAN_SUBSCRIPTION_ENDPOINTS"
                    + ("" if prefixes else " (none are configured)"),
                )
            )
    payload = channel.get("payload")
    if payload not in PAYLOAD_TYPES:
        problems.append(
            Problem(
                "Subscription.channel.payload",
                f"payload {payload!r} is not supported: use application/fhir+json",
            )
        )
    found = _one(channel.get("_payload"), CONTENT_EXTENSION, "valueCode")
    content = found[1] if found is not None else None
    if content not in CONTENTS:
        problems.append(
            Problem(
                "Subscription.channel.payload.extension",
                f"payload content {content!r} is not supported: "
                f"the backport-payload-content extension is one of {', '.join(CONTENTS)}",
            )
        )
    secret = _one(channel, SECRET_EXTENSION, "valueString")
    value = secret[1] if secret is not None else None
    if secret is not None:
        low, high = SECRET_LENGTH
        if not isinstance(value, str) or not low <= len(value) <= high:
            problems.append(
                Problem(
                    f"Subscription.channel.extension[{secret[0]}]",
                    f"the signing secret is a valueString of {low}-{high} characters",
                )
            )
            value = None
    return endpoint, str(content), value


def read(body: Json, prefixes: tuple[str, ...] | None = None) -> tuple[Spec | None, list[Problem]]:
    """The Subscription checked: everything this service does not support is a problem that
    names it. `prefixes`: the endpoint allow-list (None: not checked, for stored ones)."""
    problems: list[Problem] = []
    topic, filters, criteria = _topic(body, problems)
    endpoint, content, secret = _channel(body, prefixes, problems)
    channel = body.get("channel") or {}
    headers = _headers(channel, problems)
    heartbeat = _integer(
        channel, HEARTBEAT_EXTENSION, "heartbeatPeriod", MIN_HEARTBEAT, None, problems
    )
    timeout = _integer(channel, TIMEOUT_EXTENSION, "timeout", *TIMEOUT_SECONDS, problems)
    max_count = _integer(channel, MAX_COUNT_EXTENSION, "maxCount", 1, MAX_COUNT, problems)
    if problems or topic is None:
        return None, problems
    spec = Spec(
        topic,
        criteria,
        filters,
        endpoint,
        headers,
        content,
        heartbeat,
        timeout or DEFAULT_TIMEOUT,
        max_count or DEFAULT_MAX_COUNT,
        str(body.get("status")),
        secret,
    )
    return spec, []


def without_secret(body: Json) -> Json:
    """The resource as stored: the signing secret is not part of it."""
    channel = body.get("channel")
    if not isinstance(channel, dict) or not _extensions(channel, SECRET_EXTENSION):
        return body
    kept = [e for e in channel.get("extension", []) if e.get("url") != SECRET_EXTENSION]
    channel = {k: v for k, v in channel.items() if k != "extension"}
    if kept:
        channel["extension"] = kept
    return {**body, "channel": channel}


def with_status(body: Json, status: str, error: str | None = None) -> Json:
    """The resource with the status the server gives it (and `error`, R4's element for why)."""
    updated = {k: v for k, v in body.items() if k != "error"}
    updated["status"] = status
    if error:
        updated["error"] = error
    return updated
