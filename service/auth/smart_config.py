"""The ``/.well-known/smart-configuration`` document of the built-in authorization server
(SMART App Launch 2.x, section "SMART Backend Services")."""

from typing import Any

from service.auth.signed_jwt import ALLOWED_ALGORITHMS
from service.auth.token_server import CLIENT_CREDENTIALS

CAPABILITIES = ("client-confidential-asymmetric", "permission-v2", "permission-v1")


def scopes_supported() -> list[str]:
    """Wildcard forms of every scope shape the service understands (any type may replace
    ``*``, any subset of cruds may replace the letters, v2 scopes may add restrictions)."""
    return [
        f"{context}/*.{permissions}"
        for context in ("system", "user", "patient")
        for permissions in ("cruds", "rs", "read", "write", "*")
    ]


def smart_configuration(
    token_endpoint: str, jwks_uri: str, issuer: str | None = None
) -> dict[str, Any]:
    """The discovery document; ``issuer`` is included when given."""
    document: dict[str, Any] = {}
    if issuer is not None:
        document["issuer"] = issuer
    document.update(
        {
            "token_endpoint": token_endpoint,
            "jwks_uri": jwks_uri,
            "grant_types_supported": [CLIENT_CREDENTIALS],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALLOWED_ALGORITHMS),
            "scopes_supported": scopes_supported(),
            "capabilities": list(CAPABILITIES),
        }
    )
    return document
