"""The HTTP JWKS fetcher against a real loopback server: bounded, no redirects, JSON only."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from service.auth.jwks import (
    FetchDeferred,
    JwksUnavailable,
    RemoteJwks,
    StaticKeys,
    check_jwks_url,
    http_jwks_fetcher,
)
from tests.auth.conftest import NOW, JwksServer, public_jwks


def test_fetches_the_key_set(jwks_server: JwksServer, issuer_key: RSAKey) -> None:
    jwks_server.jwks = public_jwks(issuer_key)
    fetched = http_jwks_fetcher(timeout=1)(jwks_server.url)
    assert [key["kid"] for key in fetched["keys"]] == ["issuer-1"]


def test_an_error_status_is_unavailable(jwks_server: JwksServer) -> None:
    jwks_server.status = 404
    with pytest.raises(JwksUnavailable, match="HTTP 404"):
        http_jwks_fetcher(timeout=1)(jwks_server.url)


class _Answer:
    status = 200
    headers: dict[str, str] = {}
    body = b""


@pytest.fixture
def raw_server() -> Iterator[tuple[str, type[_Answer]]]:
    answer = type("Answer", (_Answer,), {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks", answer
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_redirect_is_not_followed(raw_server: tuple[str, type[_Answer]]) -> None:
    url, answer = raw_server
    answer.status = 302
    answer.headers = {"Location": "http://169.254.169.254/latest/meta-data"}
    with pytest.raises(JwksUnavailable, match="HTTP 302"):
        http_jwks_fetcher(timeout=1)(url)


def test_a_body_over_the_bound_is_refused(raw_server: tuple[str, type[_Answer]]) -> None:
    url, answer = raw_server
    answer.body = json.dumps({"keys": [], "padding": "x" * 5000}).encode()
    with pytest.raises(JwksUnavailable, match="too large"):
        http_jwks_fetcher(timeout=1, max_bytes=4096)(url)


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"keys": {}}'])
def test_a_body_that_is_not_a_key_set_is_refused(
    raw_server: tuple[str, type[_Answer]], body: bytes
) -> None:
    url, answer = raw_server
    answer.body = body
    with pytest.raises(JwksUnavailable):
        http_jwks_fetcher(timeout=1)(url)


def test_remote_jwks_fetches_once_for_known_kids(
    jwks_server: JwksServer, issuer_key: RSAKey
) -> None:
    jwks_server.jwks = public_jwks(issuer_key)
    remote = RemoteJwks(jwks_server.url, http_jwks_fetcher(timeout=1))
    for second in range(5):
        assert remote.key_for("issuer-1", "RS256", NOW + second) is not None
    assert jwks_server.requests == 1


def test_a_deferred_fetch_records_nothing(jwks_server: JwksServer, issuer_key: RSAKey) -> None:
    """A fetcher that may not block now (an event loop) defers: the next call, where blocking
    is allowed, fetches at once instead of waiting out the refetch interval."""
    jwks_server.jwks = public_jwks(issuer_key)
    real = http_jwks_fetcher(timeout=1)
    deferring = True

    def fetch(url: str) -> Any:
        if deferring:
            raise FetchDeferred()
        return real(url)

    remote = RemoteJwks(jwks_server.url, fetch)
    with pytest.raises(FetchDeferred):
        remote.key_for("issuer-1", "RS256", NOW)
    deferring = False
    assert remote.key_for("issuer-1", "RS256", NOW + 1) is not None
    assert jwks_server.requests == 1


def test_a_key_declared_for_another_algorithm_is_not_used(issuer_key: RSAKey) -> None:
    entry = {**issuer_key.as_dict(private=False), "alg": "RS384"}
    keys = StaticKeys({"keys": [entry]})
    assert keys.key_for("issuer-1", "RS384", NOW) is not None
    assert keys.key_for("issuer-1", "RS256", NOW) is None


def test_encryption_keys_and_unknown_types_are_skipped(issuer_key: RSAKey) -> None:
    keys = StaticKeys(
        {
            "keys": [
                {**issuer_key.as_dict(private=False), "use": "enc"},
                {"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "ed"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                "not a key",
            ]
        }
    )
    assert len(keys) == 0


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://idp.example/certs", True),
        ("http://127.0.0.1:8080/certs", True),
        ("http://localhost/certs", True),
        ("http://[::1]/certs", True),
        ("http://idp.example/certs", False),
        ("file:///etc/passwd", False),
        ("https:///nohost", False),
    ],
)
def test_jwks_urls_must_be_https_except_on_loopback(url: str, ok: bool) -> None:
    if ok:
        check_jwks_url(url)
    else:
        with pytest.raises(ValueError, match="https"):
            check_jwks_url(url)
