"""The built-in authorization server's open routes: the token endpoint (SMART Backend
Services, errors as RFC 6749 JSON), its JWKS and the SMART discovery document."""

from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.audit import record_refusal
from service.api.http import base_url, read_body
from service.api.openapi.operations import error_responses
from service.api.openapi.security import json_response
from service.api.security import authorization_of
from service.auth.token_server import OAuthError, invalid_request

router = APIRouter(tags=["authorization"])
FORM = "application/x-www-form-urlencoded"
# RFC 6749 section 5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise invalid_request(f"the body must be {FORM}")
    raw = await read_body(request)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the form body is malformed") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 section 3.2: no parameter twice
            raise invalid_request(f"{name} is given more than once")
        form[name] = value
    return form


@router.post(
    "/fhir/auth/token",
    name="auth:token",
    operation_id="token",
    summary="Get an access token (SMART Backend Services: client_credentials with a signed "
    "client assertion)",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": {
                        "type": "object",
                        "required": [
                            "grant_type",
                            "client_assertion_type",
                            "client_assertion",
                            "scope",
                        ],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_assertion_type": {
                                "type": "string",
                                "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                            },
                            "client_assertion": {"type": "string"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": json_response("The access token", "TokenResponse"),
            "400": json_response(
                "RFC 6749 error: invalid_request, invalid_scope, unsupported_grant_type",
                "OAuthError",
            ),
            "401": json_response("RFC 6749 error: invalid_client", "OAuthError"),
            # No content negotiation here: a 406 never comes from this route.
            **{str(k): v for k, v in error_responses((413,)).items() if k != 406},
        },
    },
)
async def token(request: Request) -> Response:
    """A refusal leaves an AuditEvent with its RFC 6749 error (fixed texts, never the
    assertion). An issued token does not: every request made with it does, naming its jti."""
    try:
        form = await _form(request)
        answer = await authorization_of(request).issue_token(form, base_url(request))
    except OAuthError as error:
        await record_refusal(request, error.status, f"{error.error}: {error.description}")
        return _json(error.as_json(), error.status, _NO_STORE)
    return _json(answer, 200, _NO_STORE)


@router.get(
    "/fhir/auth/jwks",
    name="auth:jwks",
    operation_id="jwks",
    summary="The public keys that verify the built-in server's access tokens",
    response_class=Response,
    openapi_extra={"responses": {"200": json_response("A JSON Web Key Set", "JsonWebKeySet")}},
)
async def jwks(request: Request) -> Response:
    return _json(await authorization_of(request).public_jwks())


@router.get(
    "/fhir/.well-known/smart-configuration",
    name="auth:smart-configuration",
    operation_id="smartConfiguration",
    summary="SMART discovery: token endpoint, JWKS, supported grants, scopes and capabilities",
    response_class=Response,
    openapi_extra={
        "responses": {"200": json_response("The SMART configuration", "SmartConfiguration")}
    },
)
async def smart_configuration(request: Request) -> Response:
    return _json(authorization_of(request).smart_configuration(base_url(request)))
