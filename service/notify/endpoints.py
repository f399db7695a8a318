"""Where notifications may go: under a URL prefix of CAREPLAN_SUBSCRIPTION_ENDPOINTS only.

A prefix is compared by its parts, not as text: scheme, host and port must be equal, and the
endpoint's path must be the prefix's path or lie under it (``https://a.example/hooks`` allows
``https://a.example/hooks/x`` but not ``https://a.example.evil.org/`` nor
``https://a.example/hooksx``). Nothing is allowed by default, so no request goes into the
hospital network unless an operator says so; redirects are never followed (worker.py).
"""

import re
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A path segment that is "." or ".." once percent-decoded (%2e, %2E), or a backslash.
_DOT_SEGMENT = re.compile(r"(^|/)(\.|%2e){1,2}(/|$)|\\", re.IGNORECASE)


def parse_prefixes(setting: str) -> tuple[str, ...]:
    return tuple(p for p in setting.replace(",", " ").split() if p)


def problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint at all (None: it can)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return "the endpoint must be an absolute http or https URL"
    if parts.username is not None or parts.password is not None:
        return "the endpoint must not carry credentials (use channel.header)"
    if parts.fragment:
        return "the endpoint must not have a fragment"
    if _DOT_SEGMENT.search(parts.path):
        # An HTTP client resolves them: /hooks/../admin would leave the allowed prefix.
        return "the endpoint's path must not have . or .. segments (plain or %-encoded)"
    if port == 0:
        return "the endpoint's port is not valid"
    return None


def _key(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    if problem(url) is not None:
        return False
    scheme, host, port, path = _key(url)
    for prefix in prefixes:
        if problem(prefix) is not None:
            continue
        p_scheme, p_host, p_port, p_path = _key(prefix)
        if (scheme, host, port) != (p_scheme, p_host, p_port):
            continue
        if path == p_path or (p_path.endswith("/") and path.startswith(p_path)):
            return True
        if path.startswith(p_path + "/"):
            return True
    return False
