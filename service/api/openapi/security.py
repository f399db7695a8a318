"""The OpenAPI security schemes: SMART Backend Services (OAuth 2.0 client credentials with a
signed client assertion) and a plain bearer token, and the requirement of each protected route.

Swagger UI cannot sign a client assertion (its client-credentials form sends a secret), so the
docs page tries calls with ``bearerToken``: get a token from the token endpoint, paste it under
"Authorize".
"""

from typing import Any

from service.auth.permissions import Need
from service.fhir.search_params import SEARCH_PARAMS

SMART = "smartBackendServices"
BEARER = "bearerToken"
TOKEN_PATH = "/fhir/auth/token"
_LETTERS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def security_for(*needs: Need) -> list[dict[str, list[str]]]:
    """Either scheme; the SMART one lists the system scopes the route needs (a matching
    patient/ or user/ scope, or a wider one, works as well)."""
    return [{SMART: [f"system/{need}" for need in needs]}, {BEARER: []}]


def security_schemes() -> dict[str, Any]:
    scopes = {"system/*.cruds": "Everything (any type, every interaction)"}
    for resource_type in SEARCH_PARAMS:
        for letter, verb in _LETTERS.items():
            scopes[f"system/{resource_type}.{letter}"] = f"{verb.capitalize()} {resource_type}"
    return {
        SMART: {
            "type": "oauth2",
            "description": "SMART Backend Services: POST grant_type=client_credentials with a "
            "client_assertion (a JWT signed with the registered client's key, "
            "client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer) "
            "to the token endpoint; see /fhir/.well-known/smart-configuration. Any "
            "patient/, user/ or system/ scope (SMART v1 or v2) that covers the listed one "
            "works.",
            "flows": {"clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": scopes}},
        },
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from the token endpoint (or a trusted issuer), "
            "pasted as it is.",
        },
    }


OAUTH_ERRORS = (
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
)


def authorization_schemas() -> dict[str, Any]:
    """Component schemas of the built-in authorization server's answers (plain JSON)."""
    text = {"type": "string"}
    return {
        "TokenResponse": {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in", "scope"],
            "properties": {
                "access_token": {**text, "description": "A JWT, sent as Bearer token"},
                "token_type": {"type": "string", "enum": ["bearer"]},
                "expires_in": {"type": "integer", "minimum": 1},
                "scope": {**text, "description": "The granted scopes, space-separated"},
            },
        },
        "OAuthError": {
            "type": "object",
            "description": "RFC 6749 section 5.2",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "enum": list(OAUTH_ERRORS)},
                "error_description": text,
            },
        },
        "JsonWebKeySet": {
            "type": "object",
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kty", "kid"],
                        "properties": {
                            name: text for name in ("kty", "kid", "use", "alg", "n", "e")
                        },
                    },
                }
            },
        },
        "SmartConfiguration": {
            "type": "object",
            "required": [
                "token_endpoint",
                "jwks_uri",
                "grant_types_supported",
                "token_endpoint_auth_methods_supported",
                "token_endpoint_auth_signing_alg_values_supported",
                "scopes_supported",
                "capabilities",
            ],
            "properties": {
                "issuer": {"type": "string", "format": "uri"},
                "token_endpoint": {"type": "string", "format": "uri"},
                "jwks_uri": {"type": "string", "format": "uri"},
                **{
                    name: {"type": "array", "items": text}
                    for name in (
                        "grant_types_supported",
                        "token_endpoint_auth_methods_supported",
                        "token_endpoint_auth_signing_alg_values_supported",
                        "scopes_supported",
                        "capabilities",
                    )
                },
            },
        },
    }


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
