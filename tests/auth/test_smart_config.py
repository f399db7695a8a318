"""The /.well-known/smart-configuration document."""

from service.auth.scopes import parse_scope
from service.auth.smart_config import smart_configuration


def test_document_advertises_backend_services() -> None:
    document = smart_configuration(
        token_endpoint="https://careplan.example/auth/token",
        jwks_uri="https://careplan.example/auth/jwks",
    )
    assert document["token_endpoint"] == "https://careplan.example/auth/token"
    assert document["jwks_uri"] == "https://careplan.example/auth/jwks"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert document["token_endpoint_auth_signing_alg_values_supported"] == [
        "RS256",
        "RS384",
        "ES256",
        "ES384",
    ]
    assert {"client-confidential-asymmetric", "permission-v2", "permission-v1"} <= set(
        document["capabilities"]
    )
    assert "system/*.cruds" in document["scopes_supported"]
    assert "patient/*.rs" in document["scopes_supported"]
    assert "issuer" not in document


def test_issuer_is_included_when_given() -> None:
    document = smart_configuration("https://x/token", "https://x/jwks", issuer="https://x")
    assert document["issuer"] == "https://x"


def test_every_advertised_scope_is_one_the_service_understands() -> None:
    document = smart_configuration("https://x/token", "https://x/jwks")
    assert all(parse_scope(scope) is not None for scope in document["scopes_supported"])
