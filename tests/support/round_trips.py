"""Round trips to PostgreSQL, counted by a TCP proxy that reads the client's protocol messages.

A client waits for the server after each Sync (the end of an extended-protocol query, or of a
pipeline) and each simple Query; the proxy counts those two messages. That is exact however
the bytes are split into packets, unlike timing when the server answers. On loopback a round
trip costs ~0.1 ms; across a network it costs the network's latency.
"""

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

_WAITS = {ord("S"), ord("Q")}  # Sync, simple Query


class RoundTripCounter:
    """A proxy to the PostgreSQL server at `target`; `trips` counts what clients waited for."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.trips = 0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True).start()
        ready.wait()

    def url(self, url: str) -> str:
        """`url` (a PostgreSQL URL for `target`) through this proxy, in plain text."""
        proxied = make_url(url).set(host="127.0.0.1", port=self.port)
        plain = proxied.update_query_dict({"sslmode": "disable", "gssencmode": "disable"})
        return plain.render_as_string(hide_password=False)

    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        """The round trips made inside the block, as the single item of the yielded list."""
        start = self.trips
        counted = [0]
        try:
            yield counted
        finally:
            counted[0] = self.trips - start

    async def _serve(self, ready: threading.Event) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        ready.set()
        await server.serve_forever()

    async def _connection(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)
        await asyncio.gather(
            self._client_messages(client_in, server_out), self._pipe(server_in, client_out)
        )

    async def _client_messages(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            # The startup packet (and an SSL or GSS request before it) has no type byte.
            while True:
                head = await reader.readexactly(8)
                writer.write(head + await reader.readexactly(struct.unpack("!I", head[:4])[0] - 8))
                if struct.unpack("!I", head[4:])[0] not in (80877103, 80877104):
                    break
            while True:
                head = await reader.readexactly(5)
                body = await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
                if head[0] in _WAITS:
                    self.trips += 1
                writer.write(head + body)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
