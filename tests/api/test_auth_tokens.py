"""Tokens at the door, over HTTP: the built-in token endpoint (RFC 6749 errors), the resource
server refusing every bad token with 401 and changing nothing, the open routes, /metrics,
discovery and the CapabilityStatement's security. Every token here is really signed."""

import json
import time
from typing import Any

import pytest
from joserfc import jwk, jwt
from joserfc.jwk import OctKey

from service.api.capability import api_routes
from service.main import create_app
from tests.api.conftest import as_ehr
from tests.api.helpers import audit_events, outcome_codes, patient, store_snapshot
from tests.conftest import FhirClient, authorize
from tests.support.tokens import (
    EXTERNAL_ISSUER,
    client_assertion,
    external_token,
    issuer_key,
)

AUDIENCE = "http://testserver/fhir"
SAML_BEARER = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
HUGE = "Bearer " + "A" * 20_000
FORM = {"content-type": "application/x-www-form-urlencoded"}
OPEN = {
    "/healthz",
    "/readyz",
    "/fhir/metadata",
    "/fhir/.well-known/smart-configuration",
    "/fhir/auth/jwks",
    "/fhir/auth/token",
}


def _unauthorized(response: Any, reason: str | None = None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="')
    assert 'error="invalid_token"' in challenge
    if reason is not None:
        assert reason in challenge
    assert outcome_codes(response) == ["login"]


def _create_without(client: FhirClient, headers: dict[str, str]) -> Any:
    return client.post("/fhir/Patient", json=patient(), headers=headers)


# --- the open routes, and everything else closed ----------------------------------------------


def test_probes_docs_and_discovery_are_open(client: FhirClient) -> None:
    client.headers.pop("authorization")
    for path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/fhir/metadata"):
        assert client.get(path).status_code == 200, path
    discovery = client.get("/fhir/.well-known/smart-configuration")
    assert discovery.status_code == 200
    assert client.get("/fhir/auth/jwks").json()["keys"]


def test_every_fhir_route_refuses_a_request_without_a_token(client: FhirClient, app: Any) -> None:
    client.headers.pop("authorization")
    before = store_snapshot(app)
    checked = 0
    for route in api_routes(app.routes):
        if not route.path.startswith("/fhir") or route.path in OPEN:
            continue
        path = route.path.replace("{id}", "x1").replace("{vid}", "1")
        for method in route.methods:
            response = client.request(method, path, json=patient())
            _unauthorized(response, "no bearer token")
            checked += 1
    assert checked > 100  # every type's interactions, the operations, batch, history
    assert store_snapshot(app) == before


def test_metrics_needs_its_own_token_while_tokens_are_required(settings: Any) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "m" * 32}))
    with FhirClient(app) as test_client:
        tokens = authorize(test_client)
        refused = test_client.get("/metrics")  # an access token is not the metrics token
        assert refused.status_code == 401
        assert outcome_codes(refused) == ["login"]
        assert test_client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
        test_client.headers.pop("authorization")
        assert test_client.get("/metrics", headers=tokens.header()).status_code == 401
        allowed = test_client.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"})
        assert allowed.status_code == 200
        assert "careplan_http_requests_total" in allowed.text


def test_metrics_without_a_configured_token_is_closed(client: FhirClient) -> None:
    assert client.get("/metrics").status_code == 401


# --- discovery and the CapabilityStatement ------------------------------------------------------


def test_smart_configuration(client: FhirClient) -> None:
    document = client.get("/fhir/.well-known/smart-configuration").json()
    assert document["token_endpoint"] == f"{AUDIENCE}/auth/token"
    assert document["jwks_uri"] == f"{AUDIENCE}/auth/jwks"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(document["token_endpoint_auth_signing_alg_values_supported"]) == {
        "RS256",
        "RS384",
        "ES256",
        "ES384",
    }
    assert "system/*.cruds" in document["scopes_supported"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(document["capabilities"])


def test_capability_statement_declares_smart_security(client: FhirClient) -> None:
    client.headers.pop("authorization")
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]
    codings = [c for service in security["service"] for c in service["coding"]]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "code": "SMART-on-FHIR",
        "display": "SMART-on-FHIR",
    } in codings
    (oauth,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    assert oauth["extension"] == [{"url": "token", "valueUri": f"{AUDIENCE}/auth/token"}]


def test_jwks_publishes_public_keys_only(client: FhirClient) -> None:
    keys = client.get("/fhir/auth/jwks").json()["keys"]
    assert keys and all(set(key) == {"kty", "kid", "use", "alg", "n", "e"} for key in keys)


# --- the token endpoint -------------------------------------------------------------------------


def test_a_token_from_the_built_in_server_works_and_is_not_cached(client: FhirClient) -> None:
    tokens = client.tokens
    tokens.register("reader", "system/Patient.rs")
    status, body = tokens.request("reader", "system/Patient.rs system/Observation.rs")
    assert status == 200, body
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs"  # the requested scopes within the client's
    claims = jwt.decode(body["access_token"], jwk.import_key(_jwks(client)[0])).claims
    assert claims["iss"] == f"{AUDIENCE}/auth"
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 300
    reader = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/fhir/Patient", headers=reader).status_code == 200
    raw = client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion("reader", tokens.token_url),
            "scope": "system/Patient.r",
        },
        headers=FORM,
    )
    assert raw.headers["Cache-Control"] == "no-store"
    assert raw.headers["content-type"].startswith("application/json")


def _jwks(client: FhirClient) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = client.get("/fhir/auth/jwks").json()["keys"]
    return keys


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, 400, "invalid_request"),
        ({"client_assertion_type": SAML_BEARER}, 401, "invalid_client"),
        ({"client_assertion": "not.a.jwt"}, 401, "invalid_client"),
        ({"scope": "system/Observation.rs"}, 400, "invalid_scope"),
        ({"scope": ""}, 400, "invalid_request"),
    ],
)  # fmt: skip
def test_token_request_errors_follow_rfc_6749(
    client: FhirClient, app: Any, form: dict[str, str], status: int, error: str
) -> None:
    client.tokens.register("reader", "system/Patient.rs")
    before, events = store_snapshot(app), len(audit_events(app))
    got, body = client.tokens.request("reader", "system/Patient.rs", **form)
    assert got == status, body
    assert body["error"] == error
    assert body["error_description"]
    assert store_snapshot(app) == before
    [event] = audit_events(app)[events:]
    assert event["outcome"] == "4"
    assert event["outcomeDesc"].startswith(f"{error}: ")
    assert form.get("client_assertion", "\x00") not in json.dumps(event)


def test_a_replayed_client_assertion_is_refused(client: FhirClient) -> None:
    tokens = client.tokens
    tokens.register("reader", "system/Patient.rs")
    assertion = client_assertion("reader", tokens.token_url)
    first, _ = tokens.request("reader", "system/Patient.rs", client_assertion=assertion)
    again, body = tokens.request("reader", "system/Patient.rs", client_assertion=assertion)
    assert (first, again) == (200, 401)
    assert body["error"] == "invalid_client"
    assert "already used" in body["error_description"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) + 600}, "5 minutes"),
        ({"exp": int(time.time()) - 300}, "expired"),
        ({"aud": "http://testserver/fhir"}, "aud"),
        ({"sub": "someone-else"}, "sub"),
    ],
)
def test_a_bad_client_assertion_is_invalid_client(
    client: FhirClient, claims: dict[str, Any], why: str
) -> None:
    tokens = client.tokens
    tokens.register("reader", "system/Patient.rs")
    assertion = client_assertion("reader", tokens.token_url, **claims)
    status, body = tokens.request("reader", "system/Patient.rs", client_assertion=assertion)
    assert status == 401
    assert body["error"] == "invalid_client"
    assert why in body["error_description"]


def test_an_assertion_signed_with_another_key_is_refused(client: FhirClient) -> None:
    tokens = client.tokens
    tokens.register("reader", "system/Patient.rs")
    stranger = jwk.generate_key("EC", "P-256", parameters={"kid": "test-client-key"})
    assertion = client_assertion("reader", tokens.token_url, key=stranger)
    status, body = tokens.request("reader", "system/Patient.rs", client_assertion=assertion)
    assert (status, body["error"]) == (401, "invalid_client")


def test_the_form_must_be_urlencoded_with_each_field_once(client: FhirClient) -> None:
    as_json = client.post("/fhir/auth/token", json={"grant_type": "client_credentials"})
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    twice = client.post(
        "/fhir/auth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers=FORM,
    )
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")


def test_the_token_of_a_removed_client_is_refused(client: FhirClient, app: Any) -> None:
    tokens = client.tokens
    tokens.register("leaver", "system/*.cruds")
    status, body = tokens.request("leaver", "system/*.cruds")
    assert status == 200
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/fhir/Patient", headers=headers).status_code == 200
    assert app.state.authorization.clients.remove("leaver")
    before = store_snapshot(app)
    _unauthorized(_create_without(client, headers), "client is no longer registered")
    assert store_snapshot(app) == before
    refused, _ = tokens.request("leaver", "system/*.cruds")
    assert refused == 401


def test_after_a_key_rotation_old_tokens_still_verify(client: FhirClient, app: Any) -> None:
    old_token = client.tokens.token()
    old_kids = {key["kid"] for key in _jwks(client)}
    rotated = app.state.authorization.keys.rotate(time.time())
    published = {key["kid"] for key in _jwks(client)}
    assert published == old_kids | {rotated.kid}
    client.tokens.register("after-rotation", "system/*.cruds")
    _, body = client.tokens.request("after-rotation", "system/*.cruds")
    new_header = json.loads(_b64decode(body["access_token"].split(".")[0]))
    assert new_header["kid"] == rotated.kid
    for token in (old_token, body["access_token"]):
        got = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert got.status_code == 200


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- bad tokens at the resource server ------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    import base64

    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": EXTERNAL_ISSUER,
        "aud": AUDIENCE,
        "sub": "ehr-app",
        "scope": "system/*.cruds",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return claims


def _hs256_with_the_public_key() -> str:
    """The classic confusion attack: the issuer's public key used as an HMAC secret."""
    secret = OctKey.import_key(json.dumps(issuer_key().as_dict(private=False)).encode())
    header = {"alg": "HS256", "kid": issuer_key().kid}
    return jwt.encode(header, _claims(), secret, algorithms=["HS256"])


BAD_TOKENS = {
    "unsigned (alg none)": (
        lambda: f"{_b64({'alg': 'none', 'kid': 'ehr-key-1'})}.{_b64(_claims())}.",
        "not allowed",
    ),
    "HS256 with the public key as secret": (_hs256_with_the_public_key, "not allowed"),
    "unknown kid": (
        lambda: external_token(
            "system/*.cruds",
            AUDIENCE,
            key=jwk.generate_key("RSA", 2048, parameters={"kid": "nobody-knows"}),
        ),
        "unknown key id",
    ),
    "signed by a stranger with a known kid": (
        lambda: external_token(
            "system/*.cruds",
            AUDIENCE,
            key=jwk.generate_key("RSA", 2048, parameters={"kid": "ehr-key-1"}),
        ),
        "signature",
    ),
    "expired": (
        lambda: external_token(
            "system/*.cruds", AUDIENCE, exp=int(time.time()) - 120, iat=int(time.time()) - 600
        ),
        "expired",
    ),
    "not yet valid": (
        lambda: external_token("system/*.cruds", AUDIENCE, nbf=int(time.time()) + 600),
        "not yet valid",
    ),
    "issued in the future": (
        lambda: external_token("system/*.cruds", AUDIENCE, iat=int(time.time()) + 600),
        "future",
    ),
    "wrong audience": (
        lambda: external_token("system/*.cruds", "https://other-service.example.org/fhir"),
        "not meant for this service",
    ),
    "wrong issuer": (
        lambda: external_token("system/*.cruds", AUDIENCE, iss="https://evil.example.org"),
        "issuer not trusted",
    ),
    "no expiry": (lambda: external_token("system/*.cruds", AUDIENCE, exp=None), "no expiry"),
    "malformed": (lambda: "abc.def", "malformed"),
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
def test_a_bad_token_is_401_and_changes_nothing(
    ehr_client: FhirClient, ehr_app: Any, name: str
) -> None:
    make, reason = BAD_TOKENS[name]
    good = as_ehr("system/*.cruds")
    assert _create_without(ehr_client, good).status_code == 201  # the issuer itself is trusted
    before, events = store_snapshot(ehr_app), len(audit_events(ehr_app))
    token = make()
    _unauthorized(_create_without(ehr_client, {"Authorization": f"Bearer {token}"}), reason)
    assert store_snapshot(ehr_app) == before
    _refusal_audited(ehr_app, events, token)


def _refusal_audited(app: Any, events_before: int, token: str) -> None:
    """The refused request left one AuditEvent: failed (outcome 4), no caller, no token."""
    new = audit_events(app)[events_before:]
    assert len(new) == 1, new
    assert new[0]["outcome"] == "4"
    assert "No usable bearer token" in new[0]["outcomeDesc"]
    assert new[0]["agent"][0]["who"] == {"display": "no verified access token"}
    if token.strip():
        assert token.strip() not in json.dumps(new[0])


@pytest.mark.parametrize(
    "value",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b c", "Token abc", HUGE],
)
def test_a_missing_huge_or_malformed_authorization_header_is_401(
    client: FhirClient, app: Any, value: str
) -> None:
    before, events = store_snapshot(app), len(audit_events(app))
    _unauthorized(_create_without(client, {"Authorization": value}))
    assert store_snapshot(app) == before
    _refusal_audited(app, events, value.removeprefix("Bearer").strip() or value)


def test_an_external_issuers_token_with_an_scp_list_works(ehr_client: FhirClient) -> None:
    headers = as_ehr(None, scp=["system/Patient.cruds"])
    assert _create_without(ehr_client, headers).status_code == 201
    refused = ehr_client.get("/fhir/Observation", headers=headers)
    assert refused.status_code == 403


def test_an_issuer_whose_keys_cannot_be_fetched_is_503_and_changes_nothing(
    settings: Any,
) -> None:
    """A trusted issuer's JWKS is down (here: a loopback port nobody listens on): its tokens
    cannot be checked. That is the issuer's trouble, not the caller's: 503, try again later."""
    from tests.deploy.processes import free_port

    issuers = json.dumps(
        [
            {
                "issuer": EXTERNAL_ISSUER,
                "jwks_uri": f"http://127.0.0.1:{free_port()}/jwks.json",
                "audience": AUDIENCE,
            }
        ]
    )
    app = create_app(settings.model_copy(update={"auth_issuers": issuers}))
    with FhirClient(app) as test_client:
        before = store_snapshot(app)
        response = _create_without(
            test_client, {"Authorization": f"Bearer {external_token('system/*.cruds', AUDIENCE)}"}
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert outcome_codes(response) == ["transient"]
        assert store_snapshot(app) == before
