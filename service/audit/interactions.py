"""Which FHIR interaction a request is, read off its method and path (below the FHIR base), so
a request that failed before any use case ran is recorded as what it tried to do."""

import re
from urllib.parse import parse_qsl, urlencode

from service.audit.events import Interaction

_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Query parameters whose value is a credential (RFC 6750 allows a token in the URL).
_SECRET_PARAMS = frozenset({"access_token", "client_assertion", "client_secret"})


def interaction_for(method: str, path: str) -> Interaction:
    """The interaction of ``method`` on ``path`` (relative to the FHIR base, e.g.
    ``Observation/1/_history/2``); unknown shapes count as ``operation``. The type and id are
    kept only when they have the form of a type and an id."""
    segments = [s for s in path.split("/") if s]
    method = method.upper()
    resource_type = segments[0] if segments and _TYPE_RE.match(segments[0]) else None
    resource_id = segments[1] if len(segments) > 1 and _ID_RE.match(segments[1]) else None
    operation = next((s[1:] for s in segments if s.startswith("$") and len(s) > 1), None)
    if operation is not None:
        return Interaction("operation", resource_type, resource_id, operation=operation)
    if not segments:
        return Interaction("transaction" if method == "POST" else "search-system")
    if segments == ["_history"]:
        return Interaction("history-system")
    if segments == ["metadata"]:
        return Interaction("capabilities")
    if resource_type is None:
        return Interaction("operation")
    if len(segments) == 1:
        code = "create" if method == "POST" else "search-type"
        return Interaction(code, resource_type)
    if segments[1:] == ["_search"]:
        return Interaction("search-type", resource_type)
    if segments[1:] == ["_history"]:
        return Interaction("history-type", resource_type)
    if len(segments) == 2:
        codes = {"PUT": "update", "DELETE": "delete", "PATCH": "patch"}
        return Interaction(codes.get(method, "read"), resource_type, resource_id)
    if len(segments) == 3 and segments[2] == "_history":
        return Interaction("history-instance", resource_type, resource_id)
    if len(segments) == 4 and segments[2] == "_history":
        return Interaction("vread", resource_type, resource_id)
    return Interaction("operation", resource_type, resource_id)


def searches(interaction: Interaction) -> bool:
    """Whether the request's parameters are its subject (BALP records them as the query)."""
    return interaction.code in ("search-type", "search-system")


def raw_query(path: str, *parameter_texts: str) -> str:
    """The search as requested, for the Query entity: the path and its parameters (the URL's,
    then a POSTed form's) as sent, except the value of a parameter that carries a credential."""
    text = "&".join(t for t in parameter_texts if t)
    pairs = parse_qsl(text, keep_blank_values=True)
    if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
        text = urlencode([(k, "(removed)" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs])
    return f"{path}?{text}" if text else path
