"""Bounds on what one client can hold of a worker process: the time its request body may take to
arrive, and how many requests are in progress at once.

Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams and cost a task per
request). A body not complete ``body_timeout`` seconds after its headers is answered 408 and its
connection closed, so a client trickling a body does not hold a connection and a request slot
for ever. Beyond ``max_concurrent`` requests in progress, a request is answered 503 with
Retry-After before it runs, except the health probes: a busy process is not a dead one, and
a restart would only make it busier. Connections that stay idle, or are slow to send a request's
headers, are closed by the HTTP server (service/server.py).
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.api.errors import outcome_response
from service.fhir.errors import FhirError, Issue

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
RETRY_AFTER_SECONDS = 1


class RequestLimits:
    def __init__(self, app: ASGIApp, *, body_timeout: float, max_concurrent: int) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_concurrent = max_concurrent
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrent:
            await self._busy(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, self._within_deadline(receive), send)
        finally:
            self.in_progress -= 1

    def _within_deadline(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        complete = False

        async def receive_body() -> Message:
            nonlocal complete
            if complete:  # what follows the body is the client's disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise FhirError(
                    408,
                    [
                        Issue(
                            "timeout", f"The request body took longer than {self.body_timeout:g} s"
                        )
                    ],
                    {"Connection": "close"},
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_body

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"The service is busy ({self.max_concurrent} requests in progress); retry shortly"
        # Its body is not read: the connection closes with the answer.
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"}
        await outcome_response(503, [Issue("transient", text)], headers)(scope, receive, send)
