"""A rest-hook endpoint on loopback for the subscription tests: a real HTTP server in a
thread that records every notification, checks its signature, and answers as told (200,
another status, late, by closing the connection, with a redirect). It can go down and come
back up on the same port."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from service.notify.notifications import SIGNATURE_HEADER, verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature checked out

    @property
    def bundle(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.bundle["entry"][0]["resource"])

    def parameter(self, name: str) -> Any:
        for part in self.status["parameter"]:
            if part["name"] == name:
                return next(v for k, v in part.items() if k.startswith("value"))
        return None

    @property
    def kind(self) -> str:
        return str(self.parameter("type"))

    @property
    def event_numbers(self) -> list[int]:
        return [
            int(next(p["valueString"] for p in part["part"] if p["name"] == "event-number"))
            for part in self.status["parameter"]
            if part["name"] == "notification-event"
        ]

    @property
    def foci(self) -> list[str]:
        return [
            p["valueReference"]["reference"]
            for part in self.status["parameter"]
            if part["name"] == "notification-event"
            for p in part["part"]
            if p["name"] == "focus"
        ]


@dataclass
class Receiver:
    secret: str
    answer: Any = 200  # an HTTP status, "close", "redirect", or ("slow", seconds)
    received: list[Received] = field(default_factory=list)  # answered with success
    attempts: int = 0  # every request, whatever the answer
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/careplan"

    @property
    def prefix(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                signed = verify(body, receiver.secret, headers.get(SIGNATURE_HEADER.lower(), ""))
                answer = receiver.answer
                with receiver._lock:
                    receiver.attempts += 1
                if answer == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                if answer == "redirect":
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver._lock:
                    if 200 <= int(answer) < 300:
                        receiver.received.append(Received(headers, body, signed))
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def notifications(self, kind: str = "event-notification") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.kind == kind]

    def event_numbers(self) -> list[int]:
        return [n for r in self.notifications() for n in r.event_numbers]

    def wait(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; received {[r.kind for r in self.received]}")
