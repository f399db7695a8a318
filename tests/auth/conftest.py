"""Keys, signed tokens, a clock and a loopback JWKS server for the authorization tests."""

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwk, jwt
from joserfc.jwk import ECKey, Key, RSAKey

NOW = 1_800_000_000.0
CREATED = datetime.fromtimestamp(NOW, UTC)
ALL_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384", "HS256"]


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sign(key: Key, claims: Mapping[str, Any], **header: Any) -> str:
    """A JWT signed by ``key`` (RS256 for RSA, ES256 for EC unless ``alg`` is given)."""
    alg = header.pop("alg", "RS256" if isinstance(key, RSAKey) else "ES256")
    full_header = {"alg": alg, **({"kid": key.kid} if key.kid else {}), **header}
    return jwt.encode(full_header, dict(claims), key, algorithms=ALL_ALGORITHMS)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: Mapping[str, Any], **header: Any) -> str:
    """A token with ``alg: none`` and no signature."""
    return (
        f"{b64(json.dumps({'alg': 'none', **header}).encode())}.{b64(json.dumps(claims).encode())}."
    )


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


@pytest.fixture(scope="session")
def issuer_key() -> RSAKey:
    return jwk.generate_key("RSA", 2048, parameters={"kid": "issuer-1"})


@pytest.fixture(scope="session")
def issuer_key_2() -> RSAKey:
    return jwk.generate_key("RSA", 2048, parameters={"kid": "issuer-2"})


@pytest.fixture(scope="session")
def stranger_key() -> RSAKey:
    """Not published anywhere; shares the kid of ``issuer_key``."""
    return jwk.generate_key("RSA", 2048, parameters={"kid": "issuer-1"})


@pytest.fixture(scope="session")
def client_key() -> ECKey:
    return jwk.generate_key("EC", "P-384", parameters={"kid": "client-1"})


@pytest.fixture(scope="session")
def client_rsa_key() -> RSAKey:
    return jwk.generate_key("RSA", 2048, parameters={"kid": "client-rsa"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class JwksServer:
    """A JWKS at http://127.0.0.1:<port>/jwks.json, counting requests; it can fail or stall."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.requests = 0
        self.status = 200
        self.stall_seconds = 0.0
        server = self
        stop = threading.Event()
        self.stop = stop

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if server.stall_seconds:
                    stop.wait(server.stall_seconds)
                body = json.dumps(server.jwks).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.close()


def elapsed(started: float) -> float:
    return time.monotonic() - started
