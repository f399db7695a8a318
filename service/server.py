"""The HTTP server's connection handling for `careplan serve`: uvicorn's httptools protocol,
with idle connections and slow request heads closed.

uvicorn closes a connection that stays idle `timeout_keep_alive` seconds after a response, but
never one that has not sent a request yet, and it stops that timer at a request's first byte: a
thousand connections that send nothing, or a header line now and then, stayed open for ever.
Here the same timeout also runs from the connection's opening, and from the end of a response
until the next request's headers are complete. Slow bodies are the application's to bound
(service/api/limits.py), where they can be answered 408.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHttpProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: no pipelined request is waiting, none has begun.
        if self.timeout_keep_alive_task is not None:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_too_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
