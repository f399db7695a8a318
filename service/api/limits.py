"""Bounds on what one client can hold of a worker process: the time its request body may take to
arrive, and how many requests are in progress at once.

Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams and cost a task per
request). A body not complete ``body_timeout`` seconds after its headers is answered 408 and its
connection closed, so a client trickling a body does not hold a connection and a request slot
for ever. Beyond ``max_concurrent`` requests in progress, a request is answered 503 with
Retry-After before it runs, except the health probes: a busy process is not a dead one, and
a restart would only make it busier. Connections that stay idle, or are slow to send a request's
headers, are closed by the HTTP server (service/server.py).

The body deadline costs next to nothing per request: a request waiting for its body registers
itself, and a sweep twice a second (armed only while requests come in) cancels the waits that
are past their deadline. ``asyncio.timeout`` around each read cost ~40 us a request.
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
SWEEP_SECONDS = 0.5


class RequestLimits:
    def __init__(self, app: ASGIApp, *, body_timeout: float, max_concurrent: int) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_concurrent = max_concurrent
        self.in_progress = 0
        self._waiting: dict[asyncio.Task[Any], float] = {}  # reading a body: its deadline
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None

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
            task = asyncio.current_task()
            assert task is not None
            self._waiting[task] = deadline
            self._arm_sweep(loop)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if task not in self._expired:
                    raise
                self._expired.discard(task)
                task.uncancel()
                late = f"The request body took longer than {self.body_timeout:g} s"
                raise FhirError(408, [Issue("timeout", late)], {"Connection": "close"}) from None
            finally:
                self._waiting.pop(task, None)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_body

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweep is None or self._sweep_loop is not loop:
            self._sweep_loop = loop
            self._sweep = loop.call_later(SWEEP_SECONDS, self._sweep_expired, loop)

    def _sweep_expired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        for task, deadline in list(self._waiting.items()):
            if deadline <= now and task.get_loop() is loop and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._waiting:
            self._arm_sweep(loop)

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"The service is busy ({self.max_concurrent} requests in progress); retry shortly"
        # Its body is not read: the connection closes with the answer.
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"}
        await outcome_response(503, [Issue("transient", text)], headers)(scope, receive, send)
