"""SMART App Launch resource scopes, v2 and v1: grammar, matching and granting.

v2: ``<context>/<Type|*>.<permissions>[?param=value&...]`` where context is ``patient``, ``user``
or ``system`` and permissions are some of ``c r u d s`` in that order (create, read, update,
delete, search). v1: ``<context>/<Type|*>.read`` (= r + s), ``.write`` (= c + u + d) and ``.*``
(all five). Strings that are not resource scopes (``launch``, ``openid``, malformed ones) grant
nothing; they are kept in ``ScopeSet.ignored`` so that a caller can report them.

A v2 restriction (``patient/Observation.rs?code=http://loinc.org|72514-3``) narrows the scope to
resources that match every ``param=value`` pair. Only token parameters are understood, matched
against the resource's own elements (see ``Restriction.matches``); a parameter with a modifier
or a chain (``code:in``, ``subject.name``) makes the whole scope malformed, so it grants nothing.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote

Context = Literal["patient", "user", "system"]
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
PERMISSION_ORDER = "cruds"
V1_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset("cruds"),
}

_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<permissions>[a-z]+|\*)(?:\?(?P<query>.+))?"
)
_PARAM_NAME = re.compile(r"_?[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# Parameters whose element is not named after them.
_ELEMENT_OF_PARAM: Mapping[str, tuple[str, ...]] = {
    "_tag": ("meta", "tag"),
    "_security": ("meta", "security"),
}


@dataclass(frozen=True)
class Restriction:
    """The ``?param=value&...`` of a v2 scope: every pair must hold (AND); in a value, an
    unescaped comma separates alternatives (OR), as in FHIR search.

    Values use the FHIR token syntax: ``system|code``, ``code`` (any system), ``system|`` (any
    code of that system), ``|code`` (a code without a system).
    """

    params: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.params)

    def combined(self, other: "Restriction") -> "Restriction":
        """Both restrictions at once (what a resource must match to satisfy each)."""
        return Restriction(tuple(sorted(set(self.params) | set(other.params))))

    def query(self) -> str:
        """The restriction as it is written after ``?`` (empty when there is none)."""
        return "&".join(f"{name}={quote(value, safe='|,:/')}" for name, value in self.params)

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether the resource satisfies every pair.

        ``param`` names the resource's top-level element (kebab-case becomes camelCase:
        ``body-site`` -> ``bodySite``; ``_tag`` and ``_security`` are ``meta.tag`` and
        ``meta.security``). The element may be a code (a string), a Coding, a CodeableConcept,
        or a list of those. A missing element, or one of another kind, does not match: a
        restriction the resource cannot show it meets refuses it.
        """
        return all(
            _token_matches(_codings_of(resource, name), value) for name, value in self.params
        )


NO_RESTRICTION = Restriction()


@dataclass(frozen=True)
class ResourceScope:
    """One resource scope. ``resource_type`` is ``*`` for every type."""

    context: Context
    resource_type: str
    permissions: frozenset[str]
    restriction: Restriction = NO_RESTRICTION
    v1: bool = False

    def covers(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def allows(self, letter: str, resource_type: str) -> bool:
        return letter in self.permissions and self.covers(resource_type)

    def intersection(self, other: "ResourceScope") -> "ResourceScope | None":
        """What this scope and ``other`` both allow, or None when nothing."""
        if self.context != other.context:
            return None
        if other.resource_type == "*":
            resource_type = self.resource_type
        elif self.resource_type in ("*", other.resource_type):
            resource_type = other.resource_type
        else:
            return None
        letters = self.permissions & other.permissions
        if not letters:
            return None
        restriction = self.restriction.combined(other.restriction)
        # Answer in the form asked for when the result is still expressible that way.
        v1 = self.v1 and letters == self.permissions and not restriction
        return ResourceScope(self.context, resource_type, letters, restriction, v1)

    def __str__(self) -> str:
        head = f"{self.context}/{self.resource_type}."
        if self.v1:
            name = next(n for n, letters in V1_PERMISSIONS.items() if letters == self.permissions)
            return head + name
        letters = "".join(letter for letter in PERMISSION_ORDER if letter in self.permissions)
        return head + letters + (f"?{self.restriction.query()}" if self.restriction else "")


def parse_scope(text: str) -> ResourceScope | None:
    """The resource scope ``text`` spells, or None when it is not one (or is malformed)."""
    match = _SCOPE.fullmatch(text)
    if match is None:
        return None
    context = cast(Context, match["context"])
    permissions_text, query = match["permissions"], match["query"]
    if permissions_text in V1_PERMISSIONS:
        if query is not None:
            return None  # restrictions exist only in v2
        return ResourceScope(context, match["type"], V1_PERMISSIONS[permissions_text], v1=True)
    letters = _v2_permissions(permissions_text)
    if letters is None:
        return None
    restriction = NO_RESTRICTION
    if query is not None:
        parsed = _restriction(query)
        if parsed is None:
            return None
        restriction = parsed
    return ResourceScope(context, match["type"], letters, restriction)


@dataclass(frozen=True)
class ScopeSet:
    """The resource scopes of a token, and the scope strings that grant nothing."""

    scopes: tuple[ResourceScope, ...] = ()
    ignored: tuple[str, ...] = ()

    @classmethod
    def parse(cls, scope_strings: str | Iterable[str]) -> "ScopeSet":
        """From a space-separated string or from separate strings."""
        items = scope_strings.split() if isinstance(scope_strings, str) else scope_strings
        scopes: list[ResourceScope] = []
        ignored: list[str] = []
        for item in items:
            scope = parse_scope(item)
            if scope is None:
                ignored.append(item)
            elif scope not in scopes:
                scopes.append(scope)
        return cls(tuple(scopes), tuple(ignored))

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> "ScopeSet":
        """From a token's ``scope`` claim (space-separated), else its ``scp`` claim (a list of
        strings, or a space-separated string as some servers send it)."""
        value = claims.get("scope")
        if value is None:
            value = claims.get("scp")
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, list):
            texts = [item for item in value if isinstance(item, str)]
            parsed = cls.parse(texts)
            dropped = tuple("<not a string>" for item in value if not isinstance(item, str))
            return cls(parsed.scopes, parsed.ignored + dropped)
        return cls()

    def matching(self, letter: str, resource_type: str) -> tuple[ResourceScope, ...]:
        """The scopes that allow ``letter`` on ``resource_type``."""
        return tuple(scope for scope in self.scopes if scope.allows(letter, resource_type))

    def __str__(self) -> str:
        return " ".join(str(scope) for scope in self.scopes)


def grant(requested: str, allowed: str) -> tuple[str, ...]:
    """The requested scopes within the allowed ones, in the order requested.

    Each requested resource scope is intersected with each allowed one (same context; a ``*``
    type narrows to the other's type; the common permission letters; both restrictions), so
    ``patient/Observation.rs`` against ``patient/*.cruds`` gives ``patient/Observation.rs`` and
    against ``patient/Observation.r`` gives ``patient/Observation.r``. Requested strings that are
    not resource scopes are not granted. Empty when nothing is left.
    """
    allowed_scopes = ScopeSet.parse(allowed).scopes
    granted: list[str] = []
    for asked in ScopeSet.parse(requested).scopes:
        for offered in allowed_scopes:
            common = asked.intersection(offered)
            if common is not None and str(common) not in granted:
                granted.append(str(common))
    return tuple(granted)


def _v2_permissions(text: str) -> frozenset[str] | None:
    # Letters must appear once each, in the order c r u d s.
    position = -1
    for letter in text:
        index = PERMISSION_ORDER.find(letter)
        if index <= position:
            return None
        position = index
    return frozenset(text)


def _restriction(query: str) -> Restriction | None:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    if not pairs:
        return None
    for name, value in pairs:
        if not _PARAM_NAME.fullmatch(name) or not value:
            return None
    return Restriction(tuple(sorted(set(pairs))))


def _element_path(param: str) -> tuple[str, ...]:
    if param in _ELEMENT_OF_PARAM:
        return _ELEMENT_OF_PARAM[param]
    head, *rest = param.split("-")
    return (head + "".join(part.capitalize() for part in rest),)


def _codings_of(resource: Mapping[str, Any], param: str) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs found in the element the parameter names."""
    values: list[Any] = [resource]
    for step in _element_path(param):
        values = [
            item
            for value in values
            if isinstance(value, Mapping)
            for item in _as_list(value.get(step))
        ]
    pairs: list[tuple[str | None, str | None]] = []
    for value in values:
        if isinstance(value, str):
            pairs.append((None, value))
        elif isinstance(value, Mapping):
            codings = value.get("coding", [value])
            for coding in _as_list(codings):
                if isinstance(coding, Mapping):
                    pairs.append(
                        (_str_or_none(coding.get("system")), _str_or_none(coding.get("code")))
                    )
    return pairs


def _token_matches(codings: Sequence[tuple[str | None, str | None]], value: str) -> bool:
    return any(
        _one_token_matches(system, code, alternative)
        for alternative in _split_unescaped(value, ",")
        for system, code in codings
    )


def _one_token_matches(system: str | None, code: str | None, token: str) -> bool:
    parts = [_unescape(part) for part in _split_unescaped(token, "|")]
    if len(parts) == 1:
        return code == parts[0]
    if len(parts) != 2:
        return False
    wanted_system, wanted_code = parts
    if wanted_system == "":
        return system is None and code == wanted_code
    if wanted_code == "":
        return system == wanted_system
    return system == wanted_system and code == wanted_code


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped with a backslash (FHIR search escaping);
    the parts keep their escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(char + next(chars, ""))
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
